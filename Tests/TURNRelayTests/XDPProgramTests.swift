import Testing

@testable import TURNRelay

/// The XDP program through libbpf, without attaching it: the kernel's verifier accepts it, its
/// maps take the layouts `traverse_xdp_maps.h` defines, and a missing object is a clean failure.
/// Loading needs root (CAP_BPF): CI runs as root.
@Suite("XDP program")
struct XDPProgramTests {
    @Test("a missing object is a failure at the object stage, not a crash")
    func missingObject() {
        switch XDPProgram.load(objectPath: "/nonexistent/traverse-xdp.bpf.o", interfaces: []) {
        case .success: Issue.record("loaded a missing object")
        case .failure(let f): #expect(f.stage == "object")
        }
    }

    @Test("the built program passes the verifier; its counters start at zero")
    func loadsTheBuiltProgram() throws {
        let path = XDPProgram.defaultObjectPath
        let program = try XDPProgram.load(objectPath: path, interfaces: []).get()
        defer { program.close() }
        #expect(program.attachments.isEmpty)
        let verdicts = program.verdicts()
        #expect(verdicts.count == FastPathVerdict.allCases.count)
        #expect(verdicts.allSatisfy { $0 == 0 })
    }

    @Test("an unknown interface fails at the interface stage and detaches nothing")
    func unknownInterface() {
        switch XDPProgram.load(objectPath: XDPProgram.defaultObjectPath, interfaces: ["nosuchif0"]) {
        case .success: Issue.record("attached to a missing interface")
        case .failure(let f): #expect(f.stage == "interface")
        }
    }
}
