// The STUN codec's packet-path operations, each required to cost no heap allocation.
//
// Every benchmark prepares its buffers before `startMeasurement()`; the measured loop only
// parses or writes into memory that already exists, as the server's receive loop does.
// Counts and times are per operation (`scalingFactor: .kilo` runs 1000 operations per
// iteration and divides).
import Benchmark
import STUNCodec

/// A fixed-address byte buffer that outlives the measured loop.
final class Buffer: @unchecked Sendable {
    let raw: UnsafeMutableRawBufferPointer
    private(set) var count: Int

    init(capacity: Int) {
        raw = .allocate(byteCount: capacity, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        count = 0
    }

    convenience init(_ bytes: [UInt8]) {
        self.init(capacity: bytes.count)
        bytes.withUnsafeBytes { raw.copyMemory(from: $0) }
        count = bytes.count
    }

    /// The bytes written so far.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: raw[0..<count]) }

    /// Writes a message with `STUNMessageWriter` (outside the measured region).
    func write(
        type: STUNMessageType, transactionID: STUNTransactionID, _ body: (inout STUNMessageWriter) throws -> Void
    )
        rethrows
    {
        var writer = try! STUNMessageWriter(into: raw, type: type, transactionID: transactionID)
        try body(&writer)
        count = writer.count
    }

    deinit { raw.deallocate() }
}

let transactionID = STUNTransactionID(high: 0xb7e7_a701_bc34_d686, low: 0xfa87_dfae)
let clientAddress = TransportAddress(ip: .v4(0xC633_6407), port: 54_321)
let clientAddressV6 = TransportAddress(ip: .v6(0x2001_0db8_1234_5678, 0x0011_2233_4455_6677), port: 54_321)
let shortTermKey = Buffer(Array("VOkJxbRl1RmTxUk/WvJxBt".utf8))

/// An ICE connectivity check: a Binding request with USERNAME, PRIORITY, ICE-CONTROLLING,
/// USE-CANDIDATE and MESSAGE-INTEGRITY, optionally FINGERPRINT (as browsers send it).
func bindingRequest(fingerprint: Bool) -> Buffer {
    let buffer = Buffer(capacity: 256)
    buffer.write(type: .bindingRequest, transactionID: transactionID) { w in
        try! w.append(.username, string: "evtj:h6vY")
        try! w.append(.priority, uint32: 0x6e00_01ff)
        try! w.append(.iceControlling, uint64: 0x932f_f9b1_5126_3b36)
        try! w.append(.useCandidate, length: 0) { _ in }
        try! w.appendMessageIntegrity(key: UnsafeRawBufferPointer(shortTermKey.bytes))
        if fingerprint { try! w.appendFingerprint() }
    }
    return buffer
}

let benchmarks: @Sendable () -> Void = {
    // Every benchmark must stay allocation-free: mallocCountTotal is held to 0 at every percentile
    // (checked by `swift package benchmark thresholds check` and by baseline comparisons).
    let zeroMallocs: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .cpuTotal, .throughput, .wallClock],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000,
        thresholds: zeroMallocs
    )

    // MARK: Parsing

    Benchmark("Parse Binding request") { benchmark in
        let request = bindingRequest(fingerprint: false)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let view = try! STUNMessageView(validating: request.bytes)
            blackHole(view.transactionID)
            blackHole(view.value(of: .username)?.count)
            blackHole(view.uint32(.priority))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Parse + verify MESSAGE-INTEGRITY") { benchmark in
        let request = bindingRequest(fingerprint: false)
        let key = shortTermKey.bytes
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let view = try! STUNMessageView(validating: request.bytes)
            precondition(view.verifyMessageIntegrity(key: key))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Parse + FINGERPRINT") { benchmark in
        let request = bindingRequest(fingerprint: true)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            // The parser checks FINGERPRINT (CRC-32 over the message) as part of validation.
            let view = try! STUNMessageView(validating: request.bytes)
            blackHole(view.fingerprintOffset)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Parse ChannelData") { benchmark in
        var datagram: [UInt8] = [0x40, 0x00, 0x00, 0xA0]
        datagram += (0..<160).map { UInt8(truncatingIfNeeded: $0) }
        let buffer = Buffer(datagram)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let view = try! ChannelData.parse(buffer.bytes)
            blackHole(view.channel)
            blackHole(view.payload.count)
        }
        benchmark.stopMeasurement()
    }

    // MARK: Encoding a Binding success response

    Benchmark("Encode Binding response") { benchmark in
        let out = Buffer(capacity: 1500)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var w = try! STUNMessageWriter(into: out.raw, type: .bindingSuccess, transactionID: transactionID)
            try! w.append(.xorMappedAddress, address: clientAddress)
            blackHole(w.count)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Encode Binding response + MESSAGE-INTEGRITY") { benchmark in
        let out = Buffer(capacity: 1500)
        let key = shortTermKey.bytes
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var w = try! STUNMessageWriter(into: out.raw, type: .bindingSuccess, transactionID: transactionID)
            try! w.append(.xorMappedAddress, address: clientAddress)
            try! w.appendMessageIntegrity(key: key)
            blackHole(w.count)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Encode Binding response + MESSAGE-INTEGRITY-SHA256") { benchmark in
        let out = Buffer(capacity: 1500)
        let key = shortTermKey.bytes
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var w = try! STUNMessageWriter(into: out.raw, type: .bindingSuccess, transactionID: transactionID)
            try! w.append(.xorMappedAddress, address: clientAddressV6)
            try! w.appendMessageIntegritySHA256(key: key)
            blackHole(w.count)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("Encode Binding response + MESSAGE-INTEGRITY + FINGERPRINT") { benchmark in
        let out = Buffer(capacity: 1500)
        let key = shortTermKey.bytes
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var w = try! STUNMessageWriter(into: out.raw, type: .bindingSuccess, transactionID: transactionID)
            try! w.append(.xorMappedAddress, address: clientAddress)
            try! w.appendMessageIntegrity(key: key)
            try! w.appendFingerprint()
            blackHole(w.count)
        }
        benchmark.stopMeasurement()
    }
}
