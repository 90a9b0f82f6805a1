import TURNRelay
import Testing
import TraverseOps

@Suite("server.fast_path configuration")
struct FastPathConfigurationTests {
    @Test("off by default; xdp with interfaces reaches the relay configuration")
    func parsesIntoTheRelayConfiguration() throws {
        #expect(TraverseConfiguration().relayConfiguration().fastPath == .off)
        let c = try ConfigurationLoader.parse(
            """
            [server]
            fast_path = "xdp"
            fast_path_interfaces = ["eth0", "eth1"]
            fast_path_object = "/usr/lib/traverse/traverse-xdp.bpf.o"
            """)
        let r = c.relayConfiguration()
        #expect(r.fastPath == .xdp)
        #expect(r.fastPathInterfaces == ["eth0", "eth1"])
        #expect(r.fastPathObject == "/usr/lib/traverse/traverse-xdp.bpf.o")
    }

    @Test(
        "a bad fast path setting is refused, naming the key",
        arguments: [
            ("[server]\nfast_path = \"bpf\"", "server.fast_path"),
            ("[server]\nfast_path = \"xdp\"", "server.fast_path_interfaces"),
            ("[server]\nfast_path_interfaces = \"eth0\"", "server.fast_path_interfaces"),
        ])
    func refusesBadSettings(text: String, key: String) {
        do {
            _ = try ConfigurationLoader.parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.key == key)
        }
    }

    @Test("test lifetimes come only from the environment, bounded by the RFC's")
    func testLifetimes() throws {
        var o = ConfigurationOverrides.fromEnvironment(["TRAVERSE_TEST_PERMISSION_LIFETIME": "2"])
        let c = try o.apply(to: TraverseConfiguration(), flags: false)
        #expect(c.coreConfiguration().permissionLifetime == 2)
        #expect(c.coreConfiguration().channelLifetime == 600)
        o = ConfigurationOverrides.fromEnvironment(["TRAVERSE_TEST_CHANNEL_LIFETIME": "601"])
        #expect(throws: ConfigurationError.self) { try o.apply(to: TraverseConfiguration(), flags: false) }
    }
}
