// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Traverse",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "traverse", targets: ["traverse"]),
        .library(name: "STUNCodec", targets: ["STUNCodec"]),
        .library(name: "TURNCore", targets: ["TURNCore"]),
        .library(name: "TraverseSystem", targets: ["TraverseSystem"]),
        .library(name: "TURNRelay", targets: ["TURNRelay"]),
        .library(name: "TraverseOps", targets: ["TraverseOps"]),
        .library(name: "TraverseFleet", targets: ["TraverseFleet"]),
        .library(name: "TraverseLoad", targets: ["TraverseLoad"]),
        .executable(name: "traverse-load", targets: ["traverse-load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System libraries, found through pkg-config.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // hiredis without pkg-config: its .pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM refuses
        // (a warning on every build); the header is on the default include path.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CSRTP",
            pkgConfig: "libsrtp2",
            providers: [.apt(["libsrtp2-dev"])]
        ),
        // Small C shims: each exists because Glibc's Swift overlay hides what it wraps.
        .target(name: "CTraverseSystem"),
        .target(name: "CTraverseCrypto", dependencies: ["COpenSSL"]),
        .target(name: "CTraverseTLS", dependencies: ["COpenSSL"]),
        // libsrtp's AES-ICM and HMAC-SHA1 redone with OpenSSL: Debian's libsrtp2 uses NSS, which
        // creates a PKCS #11 context per packet and made the load generator its own bottleneck.
        .target(name: "CSRTPCrypto", dependencies: ["COpenSSL", "CSRTP"]),
        // The kernel fast path: libbpf glue (`xdp_loader.c`) and, in `bpf/`, the XDP program's
        // source, which `make build` compiles with clang -target bpf (it is not part of this target).
        .target(name: "CTraverseXDP", exclude: ["bpf"], linkerSettings: [.linkedLibrary("bpf")]),

        // Pure STUN/TURN wire format: no I/O, no Foundation.
        .target(name: "STUNCodec", dependencies: ["CTraverseCrypto"]),
        // Sans-I/O server logic: decides, never touches a socket; time is passed in.
        .target(name: "TURNCore", dependencies: ["STUNCodec", "CTraverseCrypto"]),
        // Low-level Linux I/O shared by the server and the load generator: sockets, sockaddr
        // conversion, recvmmsg/sendmmsg batches, clocks, /proc readers.
        .target(name: "TraverseSystem", dependencies: ["STUNCodec", "CTraverseSystem"]),
        // Shards, Dispatch sources, TLS/DTLS, RFC 6062, the relay port pool.
        .target(
            name: "TURNRelay",
            dependencies: [
                "TURNCore", "STUNCodec", "TraverseSystem", "CTraverseSystem", "CTraverseTLS", "COpenSSL",
                "CTraverseXDP", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Fleet coordination through Redis (hiredis): load board, bans, fleet-wide quota,
        // sessions and usage records. Runs on its own queue and threads, never on a shard's.
        .target(
            name: "TraverseFleet",
            dependencies: [
                "TURNCore", "STUNCodec", "CHiredis", "CTraverseCrypto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Operations: configuration, logging set-up, metrics and the admin HTTP endpoint.
        .target(
            name: "TraverseOps",
            dependencies: [
                "TURNRelay", "TURNCore", "STUNCodec", "TraverseFleet", "TraverseSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "FlyingFox", package: "FlyingFox"),
                .product(name: "FlyingSocks", package: "FlyingFox"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The thin executable.
        .executableTarget(
            name: "traverse",
            dependencies: [
                "TraverseOps", "TURNRelay",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Load generator: emulated WebRTC calls (SRTP over TURN) against any TURN server.
        .target(
            name: "TraverseLoad",
            dependencies: [
                "STUNCodec", "TURNCore", "TraverseSystem", "CSRTP", "CSRTPCrypto",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "traverse-load",
            dependencies: [
                "TraverseLoad",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "STUNCodecTests", dependencies: ["STUNCodec"]),
        .testTarget(name: "TURNCoreTests", dependencies: ["TURNCore", "STUNCodec"]),
        .testTarget(name: "TraverseSystemTests", dependencies: ["TraverseSystem", "STUNCodec", "CTraverseSystem"]),
        .testTarget(
            name: "TURNRelayTests",
            dependencies: [
                "TURNRelay", "TURNCore", "STUNCodec", "TraverseOps", "TraverseSystem", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "TraverseOpsTests",
            dependencies: ["TraverseOps", "TURNRelay", "TURNCore", "STUNCodec", "TraverseSystem"]),
        .testTarget(name: "TraverseFleetTests", dependencies: ["TraverseFleet", "TURNCore", "STUNCodec"]),
        .testTarget(name: "TraverseLoadTests", dependencies: ["TraverseLoad", "STUNCodec", "CSRTP", "CSRTPCrypto"]),
    ]
)

for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    target.swiftSettings = settings
}
