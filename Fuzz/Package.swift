// swift-tools-version:6.1
// libFuzzer targets for Traverse's parsers and core, kept out of the main package so that its
// builds stay fast. One executable per target; each file states its invariant at its top.
// Build and run them with `make fuzz` from the root (Fuzz/fuzz.sh); see README.md. By hand:
//     swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address
import PackageDescription

// A path dependency's identity is its directory's name (main, a worktree, a CI clone…), not
// "Traverse": derive it from where this manifest sits.
let traverse = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "traverse").lowercased()

let package = Package(
    name: "TraverseFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../")
    ],
    targets: [
        // Shared helpers: reading decisions from the input, invariants, a seeded generator.
        .target(name: "FuzzSupport"),
        .executableTarget(
            name: "fuzz-stun",
            dependencies: ["FuzzSupport", .product(name: "STUNCodec", package: traverse)]
        ),
        .executableTarget(
            name: "fuzz-framing",
            dependencies: ["FuzzSupport", .product(name: "STUNCodec", package: traverse)]
        ),
        .executableTarget(
            name: "fuzz-dtls-records",
            dependencies: ["FuzzSupport", .product(name: "TURNRelay", package: traverse)]
        ),
        .executableTarget(
            name: "fuzz-core",
            dependencies: [
                "FuzzSupport", .product(name: "STUNCodec", package: traverse),
                .product(name: "TURNCore", package: traverse),
            ]
        ),
    ]
)

for target in package.targets {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    if target.type == .executable {
        // No main: libFuzzer's driver provides it and calls LLVMFuzzerTestOneInput.
        settings.append(.unsafeFlags(["-parse-as-library"]))
    }
    target.swiftSettings = settings
}
