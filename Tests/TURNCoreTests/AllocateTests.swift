import STUNCodec
import TURNCore
import Testing

@Suite("Allocate and Refresh (RFC 8656 §7, §8)")
struct AllocateTests {
    @Test("A successful Allocate: XOR-RELAYED-ADDRESS, LIFETIME, XOR-MAPPED-ADDRESS, one relay opened")
    func success() throws {
        let h = Harness()
        let c = Client(h)
        let outcome = c.allocate()
        let m = try #require(outcome.message)
        #expect(m.type == STUNMessageType(method: .allocate, class: .successResponse))
        #expect(m.relayed == [peer("198.51.100.1:50000")])
        #expect(m.lifetime == 600)
        #expect(m.first(.xorMappedAddress) == .xorMappedAddress(c.fiveTuple.client))
        #expect(h.relays.opened.map(\.handle) == [100])
        #expect(h.relays.requests.first?.family == .ipv4)
        #expect(h.relays.requests.first?.slot == c.slot)
        #expect(h.core.allocationCount == 1)
        #expect(h.shared.allocationCount == 1)
        #expect(h.core.counters.allocationsCreated == [1, 0])
        #expect(h.core.allocation(inSlot: c.slot!)?.username == "alice")
    }

    @Test("A retransmitted Allocate (same transaction ID) gets a byte-identical answer and no second relay")
    func retransmission() throws {
        let h = Harness()
        let c = Client(h)
        let tid = STUNTransactionID.random()
        let first = c.allocate(transactionID: tid)
        h.advance(seconds: 1)
        let second = c.allocate(transactionID: tid)
        #expect(first.isSuccess)
        #expect(try #require(first.raw) == (try #require(second.raw)))
        #expect(h.relays.opened.count == 1)
        #expect(h.core.allocationCount == 1)
    }

    @Test("A second Allocate on the same 5-tuple with a new transaction is a 437")
    func secondAllocate() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        let again = c.allocate()
        #expect(again.errorCode == 437)
        #expect(h.relays.opened.count == 1)
    }

    @Test("Refresh, CreatePermission and ChannelBind without an allocation are 437s")
    func noAllocation() {
        let h = Harness()
        let c = Client(h)
        #expect(c.refresh(600).errorCode == 437)
        #expect(c.createPermission([peer("8.8.8.8:53")]).errorCode == 437)
        #expect(c.channelBind(0x4000, peer("8.8.8.8:53")).errorCode == 437)
    }

    @Test("Missing REQUESTED-TRANSPORT is a 400")
    func missingTransport() {
        let h = Harness()
        let c = Client(h)
        let outcome = c.request(.allocate, [])
        #expect(outcome.errorCode == 400)
        #expect(verifies(outcome.raw!, key: c.key))
        #expect(h.relays.requests.isEmpty)
    }

    @Test("REQUESTED-TRANSPORT TCP (relays disabled) is a 442")
    func tcpTransport() {
        let h = Harness(configure: { $0.tcpRelaysEnabled = false })
        let c = Client(h)
        #expect(c.request(.allocate, [.requestedTransport(6)]).errorCode == 442)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("REQUESTED-TRANSPORT TCP over a UDP connection is a 400 (RFC 6062 §5.1)")
    func tcpTransportOverUDP() {
        let h = Harness()
        let c = Client(h)
        #expect(c.request(.allocate, [.requestedTransport(17 - 11)]).errorCode == 400)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("A 17 and a 6 are the only transports; anything else is a 442")
    func otherTransport() {
        let h = Harness()
        let c = Client(h)
        #expect(c.request(.allocate, [.requestedTransport(132)]).errorCode == 442)
    }

    @Test("RESERVATION-TOKEN with EVEN-PORT is a 400")
    func tokenWithEvenPort() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate([.reservationToken(42), .evenPort(reserve: false)]).errorCode == 400)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("RESERVATION-TOKEN with an address family attribute is a 400")
    func tokenWithFamily() {
        let h = Harness()
        #expect(Client(h).allocate([.reservationToken(42), .requestedAddressFamily(.ipv4)]).errorCode == 400)
        #expect(
            Client(h, "203.0.113.5:40001").allocate([.reservationToken(42), .additionalAddressFamily(.ipv6)]).errorCode
                == 400)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY together are a 400")
    func bothFamilies() {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        #expect(Client(h).allocate([.requestedAddressFamily(.ipv4), .additionalAddressFamily(.ipv6)]).errorCode == 400)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("ADDITIONAL-ADDRESS-FAMILY IPv4 is a 400")
    func additionalIPv4() {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        #expect(Client(h).allocate([.additionalAddressFamily(.ipv4)]).errorCode == 400)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("EVEN-PORT R=1 with ADDITIONAL-ADDRESS-FAMILY is a 400")
    func evenPortWithAdditional() {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        #expect(Client(h).allocate([.evenPort(reserve: true), .additionalAddressFamily(.ipv6)]).errorCode == 400)
    }

    @Test("EVEN-PORT R=1 asks for an even port plus a reservation and returns RESERVATION-TOKEN")
    func evenPortReserve() throws {
        let h = Harness()
        let m = try #require(Client(h).allocate([.evenPort(reserve: true)]).message)
        #expect(m.type.messageClass == .successResponse)
        #expect(m.first(.reservationToken) == .reservationToken(0x0102_0304_0506_0708))
        #expect(h.relays.requests.first?.evenPort == true)
        #expect(h.relays.requests.first?.reserveNextPort == true)
    }

    @Test("RESERVATION-TOKEN is passed to the provider; an unknown token is a 508")
    func reservationToken() {
        let h = Harness()
        h.relays.failWith = 508
        #expect(Client(h).allocate([.reservationToken(77)]).errorCode == 508)
        #expect(h.relays.requests.first?.reservationToken == 77)
        #expect(h.shared.allocationCount == 0)
    }

    @Test("IPv6 requested when only IPv4 relays are configured is a 440")
    func ipv6Unsupported() {
        let h = Harness { $0.relayFamilies = [.ipv4] }
        #expect(Client(h).allocate([.requestedAddressFamily(.ipv6)]).errorCode == 440)
        #expect(h.relays.requests.isEmpty)
    }

    @Test("No IPv4 relay and no REQUESTED-ADDRESS-FAMILY is a 440; IPv6 requested is served")
    func ipv6Only() throws {
        let h = Harness { $0.relayFamilies = [.ipv6] }
        #expect(Client(h).allocate().errorCode == 440)
        let m = try #require(Client(h, "203.0.113.5:40001").allocate([.requestedAddressFamily(.ipv6)]).message)
        #expect(m.relayed == [peer("[2001:db8::1]:50000")])
    }

    @Test("ADDITIONAL-ADDRESS-FAMILY IPv6: two XOR-RELAYED-ADDRESS attributes")
    func dualStack() throws {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        let m = try #require(Client(h).allocate([.additionalAddressFamily(.ipv6)]).message)
        #expect(m.type.messageClass == .successResponse)
        #expect(m.relayed.map(\.family) == [.ipv4, .ipv6])
        #expect(m.first(.addressErrorCode) == nil)
        #expect(h.core.counters.allocationsCreated == [1, 1])
    }

    @Test("ADDITIONAL-ADDRESS-FAMILY IPv6 when only IPv4 can be had: success with ADDRESS-ERROR-CODE")
    func dualStackPartial() throws {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        h.relays.families = [.ipv4]
        let m = try #require(Client(h).allocate([.additionalAddressFamily(.ipv6)]).message)
        #expect(m.type.messageClass == .successResponse)
        #expect(m.relayed.map(\.family) == [.ipv4])
        guard case .addressErrorCode(let family, let code, _)? = m.first(.addressErrorCode) else {
            Issue.record("no ADDRESS-ERROR-CODE")
            return
        }
        #expect(family == .ipv6)
        #expect(code == 440)
    }

    @Test("The relay provider failing is a 508 and releases the quota")
    func providerFails() {
        let h = Harness { $0.maxAllocationsPerUser = 1 }
        h.relays.failWith = 508
        let c = Client(h)
        #expect(c.allocate().errorCode == 508)
        #expect(h.core.allocationCount == 0)
        #expect(h.shared.allocationCount == 0)
        h.relays.failWith = nil
        #expect(c.allocate().isSuccess)
    }

    @Test("Per-user quota: the allocation over the limit is a 486; freeing one makes room")
    func quota() {
        let h = Harness { $0.maxAllocationsPerUser = 2 }
        let a = Client(h, "203.0.113.5:1")
        let b = Client(h, "203.0.113.5:2")
        let c = Client(h, "203.0.113.5:3")
        #expect(a.allocate().isSuccess)
        #expect(b.allocate().isSuccess)
        #expect(c.allocate().errorCode == 486)
        // Another user is not affected.
        #expect(Client(h, "203.0.113.5:4", user: "bob", password: "builder").allocate().isSuccess)
        #expect(a.refresh(0).isSuccess)
        #expect(c.allocate().isSuccess)
    }

    @Test("Server capacity: the allocation over the limit is a 508")
    func capacity() {
        let h = Harness { $0.maxAllocations = 1 }
        #expect(Client(h, "203.0.113.5:1").allocate().isSuccess)
        #expect(Client(h, "203.0.113.5:2", user: "bob", password: "builder").allocate().errorCode == 508)
    }

    @Test("Capacity override caps allocations below the configured maximum")
    func capacityOverride() {
        let h = Harness()
        h.shared.setCapacityOverride(0)
        #expect(Client(h).allocate().errorCode == 508)
        h.shared.setCapacityOverride(-1)
        #expect(Client(h, "203.0.113.5:2").allocate().isSuccess)
    }

    @Test("Draining with alternates configured: 300 Try Alternate with ALTERNATE-SERVER of the client's family")
    func drainingAlternate() throws {
        let h = Harness {
            $0.alternateServers = [TransportAddress("[2001:db8::99]:3478")!, TransportAddress("192.0.2.99:3478")!]
        }
        h.shared.setDraining(true)
        let outcome = Client(h).allocate()
        let m = try #require(outcome.message)
        #expect(m.errorCode == 300)
        #expect(m.first(.alternateServer) == .alternateServer(TransportAddress("192.0.2.99:3478")!))
        #expect(m.first(.messageIntegrity) != nil)
        #expect(h.relays.requests.isEmpty)
        let v6 = try #require(Client(h, "[2001:db8::5]:1").allocate().message)
        #expect(v6.first(.alternateServer) == .alternateServer(TransportAddress("[2001:db8::99]:3478")!))
        h.shared.setDraining(false)
        #expect(Client(h, "203.0.113.5:2").allocate().isSuccess)
    }

    @Test("Draining without alternates is a 508")
    func drainingNoAlternate() {
        let h = Harness()
        h.shared.setDraining(true)
        #expect(Client(h).allocate().errorCode == 508)
    }

    @Test("Capacity reached with an alternate configured is a 300")
    func capacityAlternate() {
        let h = Harness {
            $0.maxAllocations = 1
            $0.alternateServers = [TransportAddress("192.0.2.99:3478")!]
        }
        #expect(Client(h, "203.0.113.5:1").allocate().isSuccess)
        #expect(Client(h, "203.0.113.5:2").allocate().errorCode == 300)
    }

    @Test(
        "Lifetimes: default 600, requested within bounds granted, above max capped, below default raised",
        arguments: [(UInt32?.none, UInt32(600)), (1200, 1200), (99_999, 3600), (100, 600), (600, 600), (3600, 3600)])
    func lifetimes(requested: UInt32?, granted: UInt32) {
        let h = Harness()
        let outcome = Client(h).allocate(requested.map { [.lifetime($0)] } ?? [])
        #expect(outcome.message?.lifetime == granted)
        #expect(h.core.allocation(inSlot: 0)?.expiry == h.now.milliseconds + UInt64(granted) * 1000)
    }

    @Test(
        "Refresh lifetimes follow the same rules",
        arguments: [(UInt32?.none, UInt32(600)), (1200, 1200), (99_999, 3600), (1, 600)])
    func refreshLifetimes(requested: UInt32?, granted: UInt32) {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        h.advance(seconds: 100)
        #expect(c.refresh(requested).message?.lifetime == granted)
        #expect(h.core.allocation(inSlot: c.slot!)?.expiry == h.now.milliseconds + UInt64(granted) * 1000)
    }

    @Test("Refresh with LIFETIME 0 deletes the allocation and closes its relay socket")
    func refreshZero() throws {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        let outcome = c.refresh(0)
        let m = try #require(outcome.message)
        #expect(m.type == STUNMessageType(method: .refresh, class: .successResponse))
        #expect(m.lifetime == 0)
        #expect(verifies(outcome.raw!, key: c.key))
        #expect(h.relays.closed.map(\.handle) == [100])
        #expect(h.core.allocationCount == 0)
        #expect(h.shared.allocationCount == 0)
        #expect(c.slot == nil)
        // Afterwards the 5-tuple has nothing: Refresh is a 437, a new Allocate works.
        #expect(c.refresh(0).errorCode == 437)
        #expect(c.allocate().isSuccess)
        guard
            case .ended(_, let user, _, _, let reason)? = h.core.events.first(where: {
                if case .ended = $0 { return true } else { return false }
            })
        else {
            Issue.record("no ended event")
            return
        }
        #expect(user == "alice")
        #expect(reason == .refreshedToZero)
    }

    @Test("Refresh REQUESTED-ADDRESS-FAMILY of a family the allocation lacks is a 443")
    func refreshFamilyMismatch() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        #expect(c.request(.refresh, [.requestedAddressFamily(.ipv6), .lifetime(600)]).errorCode == 443)
    }

    @Test("Refresh 0 with REQUESTED-ADDRESS-FAMILY on a dual allocation deletes only that family")
    func refreshOneFamily() {
        let h = Harness { $0.relayFamilies = [.ipv4, .ipv6] }
        let c = Client(h)
        #expect(c.allocate([.additionalAddressFamily(.ipv6)]).isSuccess)
        #expect(c.request(.refresh, [.requestedAddressFamily(.ipv6), .lifetime(0)]).isSuccess)
        #expect(h.relays.closed.map(\.address.family) == [.ipv6])
        #expect(h.core.allocationCount == 1)
        #expect(h.core.allocation(inSlot: c.slot!)?.relays.map(\.address.family) == [.ipv4])
    }

    @Test("An allocation expires at the sweep after its lifetime and its relay is closed")
    func expiry() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        h.advance(seconds: 599)
        h.core.sweep(now: h.now)
        #expect(h.core.allocationCount == 1)
        #expect(h.relays.closed.isEmpty)
        h.advance(seconds: 1)
        h.core.sweep(now: h.now)
        #expect(h.core.allocationCount == 0)
        #expect(h.shared.allocationCount == 0)
        #expect(h.relays.closed.map(\.handle) == [100])
        #expect(c.refresh(600).errorCode == 437)
    }

    @Test("A Refresh extends the allocation past its first lifetime")
    func refreshExtends() {
        let h = Harness()
        let c = Client(h)
        #expect(c.allocate().isSuccess)
        h.advance(seconds: 500)
        #expect(c.refresh(600).isSuccess)
        h.advance(seconds: 500)
        h.core.sweep(now: h.now)
        #expect(h.core.allocationCount == 1)
        h.advance(seconds: 100)
        h.core.sweep(now: h.now)
        #expect(h.core.allocationCount == 0)
    }

    @Test("SOFTWARE is sent on Allocate and Refresh answers when configured")
    func software() {
        let h = Harness { $0.software = "Traverse test" }
        let c = Client(h)
        #expect(
            c.challenge(.allocate, attributes: [.requestedTransport(17)]).message?.first(.software)
                == .software("Traverse test"))
        #expect(c.allocate().message?.first(.software) == .software("Traverse test"))
        #expect(c.refresh(600).message?.first(.software) == .software("Traverse test"))
        #expect(c.createPermission([peer("8.8.8.8:1")]).message?.first(.software) == nil)
    }

    @Test("External addresses replace the private relay IP in XOR-RELAYED-ADDRESS")
    func externalAddress() {
        let h = Harness { $0.externalAddresses = [IPAddress("198.51.100.1")!: IPAddress("192.0.2.200")!] }
        #expect(Client(h).allocate().message?.relayed == [peer("192.0.2.200:50000")])
    }

    @Test("FINGERPRINT in the request gets FINGERPRINT in the answer")
    func fingerprint() throws {
        let h = Harness()
        let c = Client(h)
        let m = try #require(c.request(.allocate, [.requestedTransport(17)], fingerprint: true).message)
        #expect(m.type.messageClass == .successResponse)
        #expect(m.attributes.last?.type == .fingerprint)
    }

    @Test("closeAll ends every allocation and closes every relay")
    func closeAll() {
        let h = Harness()
        #expect(Client(h, "203.0.113.5:1").allocate().isSuccess)
        #expect(Client(h, "203.0.113.5:2").allocate().isSuccess)
        h.core.closeAll(reason: .shutdown, now: h.now)
        #expect(h.core.allocationCount == 0)
        #expect(h.shared.allocationCount == 0)
        #expect(h.relays.open.isEmpty)
    }
}
