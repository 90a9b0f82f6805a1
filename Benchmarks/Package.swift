// swift-tools-version:6.1
// Micro-benchmarks of the STUN codec and the TURN core's packet path, kept out of the main package so that ordo-one/benchmark
// does not slow down its builds. Run from this directory:
//     swift package benchmark
import PackageDescription

// A path dependency's identity is its directory's name (main, a worktree, a CI clone…), not
// "Traverse": derive it from where this manifest sits.
let traverse = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "traverse").lowercased()

let package = Package(
    name: "TraverseBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "CodecBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "STUNCodec", package: traverse),
            ],
            path: "Benchmarks/CodecBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
        .executableTarget(
            name: "RelayPathBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "STUNCodec", package: traverse),
                .product(name: "TURNCore", package: traverse),
            ],
            path: "Benchmarks/RelayPathBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
        .executableTarget(
            name: "ServerPathBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "STUNCodec", package: traverse),
                .product(name: "TURNCore", package: traverse),
                .product(name: "TraverseOps", package: traverse),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/ServerPathBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        ),
    ]
)
