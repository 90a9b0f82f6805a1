// fuzz-core: the TURN server logic (`TURNServerCore`) fed a sequence of operations decoded from
// the input: Allocate, Refresh, CreatePermission, ChannelBind, Connect and ConnectionBind
// requests (with valid long-term credentials much of the time, so that they get past
// authentication, else none, wrong ones, stale or forged nonces, USERHASH, SHA-256), Send
// indications, ChannelData, Binding, raw and malformed datagrams, retransmissions, peer datagrams
// and ICMP, clock steps, sweeps, closed connections, policy reloads (bans, peer rules, removed
// users, rotated REST secrets), relay failures, draining, a fleet-wide quota answering later
// (`resumeAllocate`, `cancelPendingAllocate`), the sessions API and listener hand-over, from six
// 5-tuples (UDP, TCP, TLS; IPv4 and IPv6 clients; two sharing an IP). Relay sockets come from a
// fake provider, the fleet quota from a fake authority, time from a fake clock. The
// configuration is small (3 allocations, 2 per user, 3 permissions and 2 channels per
// allocation), its options taken from the input's first two bytes.
//
// Invariants, checked after every operation:
//  - the allocation count the core reports equals the allocations it holds, the shared state's
//    count, the relays the fake provider holds open (by slot), and allocations created minus
//    allocations ended in the core's events;
//  - no allocation without a relay: every allocation holds one or two relays of distinct
//    families, each open in the provider for that slot; no relay is opened for a slot in use,
//    closed twice, or left open without an allocation;
//  - quotas hold: allocations ≤ the server maximum, per user ≤ the per-user maximum and equal to
//    the shared state's count for that user; with a fleet quota, its count for each user equals
//    the user's allocations plus the verdicts that counted one and are still waiting, and never
//    goes below zero; live permissions and channels per allocation ≤ their maxima; live channels
//    have distinct numbers and peers within the configured range;
//  - counters never go down (nothing wraps below zero), and lifetimes stay ≤ the maximum;
//  - after a sweep nothing expired remains, and every allocation's key is still derivable from
//    the credentials in force (or it is a REST user's, kept until its username expires);
//  - the sessions API lists exactly the allocations, and ends exactly those it selects;
//  - the core's effects, applied in order to a copy of the routing state (what a kernel fast
//    path keeps), give exactly the core's live permissions and channels, with their expiries,
//    and nothing live for a slot without an allocation; relays are closed only through effects;
//  - every answer parses (a 400 to a malformed request included), matches its request's method
//    and transaction ID, is protected with
//    the request's key when the request authenticated (every success but Binding), carries
//    FINGERPRINT when the request did, and 401/438 carry REALM and NONCE;
//  - everything relayed goes out of the allocation's own relay, to a peer the policy allows (any
//    policy installed since the last sweep: a reload applies to what was granted at the sweep) and
//    the allocation has a permission (and, for ChannelData, a channel) for; peer data and ICMP
//    reach only the allocation's own client.
import FuzzSupport
import STUNCodec
import TURNCore

// MARK: - The fixed world

let realm = "example.org"
let startMilliseconds: UInt64 = 5_000_000
let startUnix: Int64 = 1_700_000_000
let restSecret = Array("fuzz rest secret".utf8)

struct User {
    let name: String
    let password: String
    let md5: [UInt8]
    let sha256: [UInt8]
    /// The MD5 key of a wrong password.
    let wrongMD5: [UInt8]
    /// USERHASH, for the static users only.
    let userhash: [UInt8]?

    init(_ name: String, _ password: String, isStatic: Bool) {
        self.name = name
        self.password = password
        let material = Array("\(name):\(realm):\(password)".utf8)
        md5 = material.withUnsafeBytes { STUNDigest.md5($0) }
        sha256 = material.withUnsafeBytes { STUNDigest.sha256($0) }
        wrongMD5 = Array("\(name):\(realm):wrong".utf8).withUnsafeBytes { STUNDigest.md5($0) }
        userhash = isStatic ? CredentialStore.userhash(username: name, realm: realm) : nil
    }
}

/// Two static users, a REST user valid for 15 minutes of fake time, an expired REST user, and
/// a user the server does not know.
let users: [User] = {
    let carol = "\(startUnix + 900):carol"
    let dave = "\(startUnix - 1):dave"
    return [
        User("alice", "wonderland", isStatic: true),
        User("bob", "builder", isStatic: true),
        User(carol, RESTCredentials.password(secret: restSecret, username: carol), isStatic: false),
        User(dave, RESTCredentials.password(secret: restSecret, username: dave), isStatic: false),
        User("mallory", "guess", isStatic: false),
    ]
}()

let credentials = CredentialStore(
    realm: realm, passwords: ["alice": "wonderland", "bob": "builder"],
    rest: RESTCredentials(secrets: [restSecret]))

let serverV4 = TransportAddress("192.0.2.10:3478")!
let serverV6 = TransportAddress("[2001:db8::10]:3478")!
let tuples: [FiveTuple] = [
    FiveTuple(client: TransportAddress("203.0.113.5:40000")!, server: serverV4, transport: .udp),
    FiveTuple(client: TransportAddress("203.0.113.5:40001")!, server: serverV4, transport: .udp),
    FiveTuple(client: TransportAddress("198.18.0.7:50000")!, server: serverV4, transport: .tcp),
    FiveTuple(client: TransportAddress("[2001:db8::5]:40000")!, server: serverV6, transport: .udp),
    FiveTuple(client: TransportAddress("203.0.113.9:443")!, server: serverV4, transport: .tls),
    FiveTuple(client: TransportAddress("198.18.0.7:50001")!, server: serverV4, transport: .tcp),
]

/// Peers the default policy allows, denies (loopback, an IPv4-mapped loopback, a relay address)
/// and that a reload may deny.
let peers: [TransportAddress] = [
    "8.8.8.8:3478", "1.1.1.1:5000", "127.0.0.1:9", "[2606:4700::1111]:53", "[::ffff:127.0.0.1]:80",
    "8.8.4.4:3478", "198.51.100.1:50000", "[2a00:1450::1]:443",
].map { TransportAddress($0)! }

/// Policies a reload may install: peer rules, a ban, and credentials with bob removed, alice's
/// password changed, the REST secret rotated (alone, or beside the old one).
let newSecret = Array("rotated rest secret".utf8)
let policies: [CorePolicy] = [
    CorePolicy(credentials: credentials),
    CorePolicy(credentials: credentials, peers: PeerPolicy(allowed: [CIDR("127.0.0.0/8")!])),
    CorePolicy(credentials: credentials, peers: PeerPolicy(denied: [CIDR("8.8.4.4/32")!])),
    CorePolicy(credentials: credentials, bannedClients: ClientBanList([CIDR("203.0.113.5/32")!])),
    CorePolicy(
        credentials: CredentialStore(
            realm: realm, passwords: ["alice": "wonderland"], rest: RESTCredentials(secrets: [restSecret]))),
    CorePolicy(
        credentials: CredentialStore(
            realm: realm, passwords: ["alice": "looking glass", "bob": "builder"],
            rest: RESTCredentials(secrets: [restSecret]))),
    CorePolicy(
        credentials: CredentialStore(
            realm: realm, passwords: ["alice": "wonderland", "bob": "builder"],
            rest: RESTCredentials(secrets: [newSecret]))),
    CorePolicy(
        credentials: CredentialStore(
            realm: realm, passwords: ["alice": "wonderland", "bob": "builder"],
            rest: RESTCredentials(secrets: [newSecret, restSecret]))),
]

let relayV4 = IPAddress("198.51.100.1")!
let relayV6 = IPAddress("2001:db8::1")!
let nonceSecret = [UInt8](repeating: 7, count: 32)

/// Buffers reused across inputs (the fuzzer runs one at a time): the core's answers (the 1500
/// bytes `handleSTUN` asks for, on the heap so AddressSanitizer guards its end) and requests.
nonisolated(unsafe) let responseBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
nonisolated(unsafe) let requestBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)

// MARK: - Fake relay provider

/// Hands out made-up relay endpoints, remembers which slot holds each, and checks that the core
/// never opens a relay for a slot in use nor closes one twice. Like the real TCP relay layer, a
/// Connect in progress is dropped when its relay closes.
final class FakeRelays: RelaySocketProvider {
    struct Held {
        let slot: Int
        let endpoint: RelayEndpoint
        let transport: RelayTransport
    }
    struct PendingConnect {
        let slot: Int
        let relay: Int32
        let peer: TransportAddress
        let transactionID: STUNTransactionID
    }

    unowned(unsafe) var core: TURNServerCore! = nil
    var open: [Int32: Held] = [:]
    var highestSlot = -1
    var nextHandle: Int32 = 100
    var nextPort: UInt16 = 50_000
    /// Every open fails with this code while set.
    var failWith: Int?
    /// IPv6 relays fail (440) while set.
    var noIPv6 = false
    var tokens: [UInt64] = []
    var nextToken: UInt64 = 0x1000
    var connects: [PendingConnect] = []
    /// Peer connections waiting for a ConnectionBind, by CONNECTION-ID, with their owner.
    var waiting: [UInt32: String] = [:]

    func openRelay(_ r: RelayRequest) -> RelayOpenResult {
        invariant(core.allocation(inSlot: r.slot) == nil, "relay requested for slot \(r.slot), which is in use")
        invariant(r.transport == .udp || r.transport == .tcp, "relay transport \(r.transport)")
        highestSlot = max(highestSlot, r.slot)
        if let failWith { return .failed(code: STUNErrorCode(rawValue: failWith)!) }
        if r.family == .ipv6 && noIPv6 { return .failed(code: .addressFamilyNotSupported) }
        if let token = r.reservationToken {
            guard let i = tokens.firstIndex(of: token) else { return .failed(code: .insufficientCapacity) }
            tokens.remove(at: i)
        }
        let endpoint = RelayEndpoint(
            handle: nextHandle, address: TransportAddress(ip: r.family == .ipv4 ? relayV4 : relayV6, port: nextPort))
        nextHandle += 1
        nextPort &+= 2
        open[endpoint.handle] = Held(slot: r.slot, endpoint: endpoint, transport: r.transport)
        var token: UInt64? = nil
        if r.reserveNextPort {
            token = nextToken
            tokens.append(nextToken)
            nextToken += 1
        }
        return .opened(endpoint, reservationToken: token)
    }

    func closeRelay(_ endpoint: RelayEndpoint) {
        invariant(open[endpoint.handle]?.endpoint == endpoint, "closing relay \(endpoint.handle), which is not open")
        open[endpoint.handle] = nil
        connects.removeAll { $0.relay == endpoint.handle }
    }

    func startConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> STUNErrorCode?
    {
        let held = open[relay.handle]
        invariant(
            held?.slot == slot && held?.transport == .tcp, "Connect from a relay that is not slot \(slot)'s TCP relay")
        if connects.contains(where: { $0.slot == slot && $0.peer == peer }) { return .connectionAlreadyExists }
        connects.append(PendingConnect(slot: slot, relay: relay.handle, peer: peer, transactionID: transactionID))
        return nil
    }

    func bindConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool {
        guard waiting[id] == username else { return false }
        waiting[id] = nil
        return true
    }
}

// MARK: - Fake fleet quota

/// A fleet-wide quota held in memory: grants while the user's count is under the limit, or
/// answers "unavailable" when told to. It answers after `reserve` returns, as the protocol
/// requires: the verdict waits in `answered` until the harness collects it.
final class FakeQuota: QuotaAuthority, @unchecked Sendable {
    // @unchecked: touched only from the fuzzer's thread (libFuzzer runs inputs one at a time).
    var counts: [String: Int] = [:]
    /// 0: decide by the count; 1: unavailable, count locally; 2: unavailable, refuse.
    var mode: UInt8 = 0
    var answered: [(done: @Sendable (QuotaVerdict) -> Void, verdict: QuotaVerdict)] = []

    func reserve(username: String, limit: Int, _ done: @escaping @Sendable (QuotaVerdict) -> Void) {
        let n = counts[username, default: 0]
        let verdict: QuotaVerdict
        switch mode {
        case 1: verdict = .unavailable(countLocally: true)
        case 2: verdict = .unavailable(countLocally: false)
        default: verdict = n < limit ? .granted : .refused
        }
        if verdict == .granted || verdict == .unavailable(countLocally: true) { counts[username] = n + 1 }
        answered.append((done, verdict))
    }

    func release(username: String) {
        let n = counts[username, default: 0] - 1
        invariant(n >= 0, "the fleet quota gave back an allocation \(username) did not hold")
        counts[username] = n
    }

    /// Whether `v` counted an allocation (and so must come back through `release`).
    static func counts(_ v: QuotaVerdict) -> Bool { v == .granted || v == .unavailable(countLocally: true) }
}

/// Collects the verdict the fake authority gave (delivered after `reserve` returned).
final class VerdictBox: @unchecked Sendable {
    // @unchecked: written and read on the fuzzer's thread only.
    var verdict: QuotaVerdict?
}

// MARK: - One run

/// Appends an attribute of raw `bytes`.
func appendBytes(_ w: inout STUNMessageWriter, _ type: STUNAttributeType, _ bytes: [UInt8]) throws(STUNEncodingError) {
    try w.append(type, length: bytes.count) { v in v.copyBytes(from: bytes) }
}

/// How a request authenticates.
enum Auth {
    case none
    case md5
    /// PASSWORD-ALGORITHM SHA-256 with MESSAGE-INTEGRITY-SHA256.
    case sha256
    /// The MD5 key with MESSAGE-INTEGRITY-SHA256 alone.
    case md5WithSHA256Integrity
    case wrongPassword
    case forgedNonce
    case userhash

    static let all: [Auth] = [
        .none, .md5, .md5, .md5, .sha256, .md5WithSHA256Integrity, .wrongPassword, .forgedNonce,
        .userhash,
    ]
}

/// A request as sent: its bytes and the key that protects it (nil when it has no valid one).
struct Request {
    var bytes: [UInt8]
    var key: [UInt8]?
}

let channelChoices: [UInt16] = [0x4000, 0x4001, 0x4002, 0x4FFF, 0x5000, 0x7FFF, 0x3FFF, 0xFFFF]

final class World {
    let configuration: CoreConfiguration
    let relays = FakeRelays()
    let shared: SharedServerState
    let core: TURNServerCore
    var milliseconds = startMilliseconds
    var nonces = [String?](repeating: nil, count: tuples.count)
    var lastRequest = [Request?](repeating: nil, count: tuples.count)
    /// The key each tuple's allocation was made with, for the answers to Connect.
    var allocationKeys = [[UInt8]?](repeating: nil, count: tuples.count)
    var connectTuples: [STUNTransactionID: Int] = [:]
    var live = 0
    var counters: CoreCounters
    var nextConnectionID: UInt32 = 1
    let quota: FakeQuota?
    /// Allocates waiting for the fleet quota, by tuple: the request and the verdict, not yet
    /// handed back to the core.
    var waiting = [(request: Request, username: String, verdict: QuotaVerdict)?](repeating: nil, count: tuples.count)
    var policy = policies[0]
    /// Policies installed since the last sweep: the core applies a reload lazily (on its next
    /// request, and to permissions already granted at its next sweep), so until then a peer
    /// allowed by any of them may still be reached.
    var recentPolicies = [policies[0]]

    init(options: UInt8, more: UInt8) {
        var c = CoreConfiguration()
        c.maxAllocations = 3
        c.maxAllocationsPerUser = 2
        c.maxPermissionsPerAllocation = 3
        c.maxChannelsPerAllocation = 2
        c.relayFamilies = options & 1 != 0 ? [.ipv4, .ipv6] : [.ipv4]
        c.bandwidthPerAllocation = options & 2 != 0 ? 3000 : 0
        c.legacyChannelNumbers = options & 4 != 0
        c.tcpRelaysEnabled = options & 8 == 0
        c.unauthenticatedRatePerSecond = options & 16 != 0 ? 3 : 50
        c.software = options & 32 != 0 ? "traverse" : nil
        c.alternateServers = options & 64 != 0 ? [TransportAddress("192.0.2.99:3478")!] : []
        c.passwordAlgorithms = options & 128 != 0 ? [.md5] : [.sha256, .md5]
        c.unauthenticatedReasonPhrases = more & 2 != 0
        c.challengeOverflowBytesPerSecond = more & 4 != 0 ? 0 : 1000
        configuration = c
        shared = SharedServerState(policy: policies[0])
        quota = more & 1 != 0 ? FakeQuota() : nil
        shared.fleet.setQuota(quota)
        if more & 8 != 0 {
            shared.fleet.setOverloaded(true)
            shared.fleet.setAlternateChooser { ft in ft.transport == .udp ? TransportAddress("192.0.2.98:3478") : nil }
        }
        core = TURNServerCore(configuration: c, shared: shared, nonceSecret: nonceSecret)
        relays.core = core
        counters = core.counters
    }

    var now: CoreTime {
        CoreTime(milliseconds: milliseconds, unixSeconds: startUnix + Int64((milliseconds - startMilliseconds) / 1000))
    }

    var channelRange: ClosedRange<UInt16> {
        configuration.legacyChannelNumbers ? ChannelData.legacyChannelRange : ChannelData.channelRange
    }

    // MARK: Building requests

    /// Writes a message into `requestBuffer`: `body` adds attributes, then credentials as `auth`
    /// says; returns nil when the attributes do not fit.
    func build(
        _ type: STUNMessageType, tuple t: Int, auth: Auth, user: User, fingerprint: Bool,
        cookie: UInt32 = stunMagicCookie, _ body: (inout STUNMessageWriter) throws(STUNEncodingError) -> Void
    ) -> Request? {
        var key: [UInt8]? = nil
        do throws(STUNEncodingError) {
            var w = try STUNMessageWriter(
                into: requestBuffer, type: type, transactionID: .random(), cookie: cookie)
            try body(&w)
            if auth != .none {
                if auth == .userhash, let hash = user.userhash {
                    try appendBytes(&w, .userhash, hash)
                } else {
                    try w.append(.username, string: user.name)
                }
                try w.append(.realm, string: realm)
                let nonce = auth == .forgedNonce ? "obMatJos2AAADAAAAAAAAAAAAAAA" : nonces[t] ?? ""
                try w.append(.nonce, string: nonce)
                var k = auth == .wrongPassword ? user.wrongMD5 : user.md5
                if auth == .sha256 {
                    var list: [UInt8] = []
                    for a in configuration.passwordAlgorithms {
                        list += [UInt8(a.number >> 8), UInt8(a.number & 0xFF), 0, 0]
                    }
                    try appendBytes(&w, .passwordAlgorithms, list)
                    try w.append(.passwordAlgorithm, uint32: 0x0002_0000)
                    k = user.sha256
                }
                let sha256Integrity = auth == .sha256 || auth == .md5WithSHA256Integrity
                try k.withUnsafeBytes { kb in
                    Result { () throws(STUNEncodingError) in
                        if sha256Integrity {
                            try w.appendMessageIntegritySHA256(key: kb)
                        } else {
                            try w.appendMessageIntegrity(key: kb)
                        }
                    }
                }.get()
                if auth != .wrongPassword && auth != .forgedNonce { key = k }
            }
            if fingerprint { try w.appendFingerprint() }
            return Request(bytes: Array(w.message), key: key)
        } catch {
            return nil
        }
    }

    /// Sends a request of `method`; when it needs a nonce the tuple has not learnt yet, first
    /// draws the 401 that carries one (as clients do).
    func request(
        _ method: STUNMethod, _ i: inout FuzzInput, fingerprint: Bool = false,
        _ body: (inout STUNMessageWriter) throws(STUNEncodingError) -> Void
    ) {
        let t = Int(i.byte()) % tuples.count
        let auth = i.pick(Auth.all)
        let user = i.pick(users)
        let type = STUNMessageType(method: method, class: .request)
        trace("  \(method) request on tuple \(t), \(auth), \(user.name)")
        if auth != .none && auth != .forgedNonce && nonces[t] == nil {
            if let first = build(type, tuple: t, auth: .none, user: user, fingerprint: fingerprint, body) {
                deliver(first, on: t)
            }
        }
        if let r = build(type, tuple: t, auth: auth, user: user, fingerprint: fingerprint, body) {
            lastRequest[t] = r
            deliver(r, on: t)
        }
    }

    // MARK: Operations

    func step(_ i: inout FuzzInput) {
        let operation = i.byte() % 26
        trace("op \(operation) at \(milliseconds - startMilliseconds) ms")
        switch operation {
        case 0, 1: allocate(&i)
        case 2:
            let flags = i.byte()
            let lifetime = i.pick([0, 1, 600, 3600, 7200, UInt32.max])
            request(.refresh, &i, fingerprint: flags & 4 != 0) { w throws(STUNEncodingError) in
                if flags & 1 != 0 { try w.append(.lifetime, uint32: lifetime) }
                if flags & 2 != 0 { try w.append(.requestedAddressFamily, uint32: UInt32(1 + flags >> 7) << 24) }
            }
        case 3:
            let chosen = (0..<(1 + Int(i.byte()) % 3)).map { _ in i.pick(peers) }
            request(.createPermission, &i) { w throws(STUNEncodingError) in
                for p in chosen { try w.append(.xorPeerAddress, address: p) }
            }
        case 4:
            let number = i.pick(channelChoices)
            let peer = i.pick(peers)
            let flags = i.byte()
            request(.channelBind, &i) { w throws(STUNEncodingError) in
                if flags & 1 == 0 { try w.append(.channelNumber, uint32: UInt32(number) << 16) }
                if flags & 2 == 0 { try w.append(.xorPeerAddress, address: peer) }
            }
        case 5: sendIndication(&i)
        case 6: channelData(&i)
        case 7: peerData(&i)
        case 8:
            let slot = Int(i.byte()) % 4
            let peer = i.pick(peers)
            if let ft = core.routeICMP(slot: slot, peer: peer, now: now) {
                let a = core.allocation(inSlot: slot)
                invariant(a?.fiveTuple == ft, "ICMP routed to a client that is not the allocation's")
                invariant(a!.hasPermission(peer.ip, now: milliseconds), "ICMP routed without a permission")
            }
        case 9: binding(&i)
        case 10: rawDatagram(&i)
        case 11: rawAttributes(&i)
        case 12:
            switch i.byte() % 4 {
            case 0: milliseconds += UInt64(i.u16())
            case 1: milliseconds += UInt64(i.byte()) * 1000
            case 2: milliseconds += UInt64(i.byte()) * 60_000
            default: milliseconds += 3_600_000
            }
        case 13: sweep()
        case 14:
            let t = Int(i.byte()) % tuples.count
            if let w = waiting[t] {
                // The client went away before the fleet's verdict (what the relay layer does).
                core.cancelPendingAllocate(tuples[t], username: w.username, verdict: w.verdict)
                waiting[t] = nil
            }
            core.closeAllocation(on: tuples[t], reason: .connectionClosed, now: now)
        case 15:
            let t = Int(i.byte()) % tuples.count
            if let r = lastRequest[t] { deliver(r, on: t) }
        case 16:
            let mode = i.byte() % 4
            relays.failWith = mode == 1 ? 508 : nil
            relays.noIPv6 = mode == 2
        case 17:
            policy = i.pick(policies)
            recentPolicies.append(policy)
            shared.replacePolicy(policy)
        case 18:
            let peer = i.pick(peers)
            request(.connect, &i) { w throws(STUNEncodingError) in try w.append(.xorPeerAddress, address: peer) }
        case 19: finishConnect(&i)
        case 20:
            switch i.byte() % 4 {
            case 0: shared.setDraining(true)
            case 1: shared.setDraining(false)
            case 2: shared.setCapacityOverride(1)
            default: shared.setCapacityOverride(-1)
            }
        case 21:
            core.closeAll(reason: .shutdown, now: now)
        case 22: resumeWaiting(&i)
        case 23: sessions(&i)
        case 24:
            let server = i.pick([serverV4, serverV6])
            let transport = i.pick([TransportProtocol.udp, .tcp, .tls])
            core.closeAllocations(servedAt: server, transport: transport, reason: .takenOver, now: now)
            for slot in 0...max(0, relays.highestSlot) {
                guard let a = core.allocation(inSlot: slot) else { continue }
                invariant(
                    a.fiveTuple.server != server || a.fiveTuple.transport != transport,
                    "an allocation of a listener handed over survived")
            }
        default:
            if let quota { quota.mode = i.byte() % 3 }
        }
        checkInvariants()
    }

    /// The fleet's verdict for a waiting Allocate arrives: the request is handled again with it.
    func resumeWaiting(_ i: inout FuzzInput) {
        let t = Int(i.byte()) % tuples.count
        guard let w = waiting[t] else { return }
        waiting[t] = nil
        w.request.bytes.withUnsafeBytes { raw in
            let view = try! STUNMessageView(validating: raw)
            let outcome = core.resumeAllocate(
                view, from: tuples[t], username: w.username, verdict: w.verdict, now: now, response: responseBuffer,
                relays: relays)
            trace("  resumed Allocate on tuple \(t) with \(w.verdict): \(outcome)")
            handle(outcome, to: view, raw: raw, request: w.request, tuple: t)
        }
    }

    /// The sessions API: the list matches the allocations; ending some ends exactly those.
    func sessions(_ i: inout FuzzInput) {
        let list = core.sessions(now: now)
        invariant(list.count == core.allocationCount, "\(list.count) sessions for \(core.allocationCount) allocations")
        invariant(Set(list.map(\.id)).count == list.count, "two sessions with one id")
        for s in list {
            let a = core.slot(for: s.fiveTuple).flatMap { core.allocation(inSlot: $0) }
            invariant(a?.id == s.id && a?.username == s.username, "session \(s.id) is not its allocation")
        }
        let before = core.allocationCount
        let ended: Int
        let expected: Int
        switch i.byte() % 3 {
        case 0:
            let id = list.isEmpty ? 42 : list[Int(i.byte()) % list.count].id
            expected = list.filter { $0.id == id }.count
            ended = core.endSessions(.id(id), now: now)
        case 1:
            let name = i.pick(users).name
            expected = list.filter { $0.username == name }.count
            ended = core.endSessions(.users({ $0 == name }), now: now)
        default:
            return
        }
        invariant(ended == expected && core.allocationCount == before - ended, "ended \(ended) sessions of \(expected)")
    }

    func allocate(_ i: inout FuzzInput) {
        let flags = i.byte()
        let more = i.byte()
        let lifetime = i.pick([0, 30, 600, 3600, 86_400, UInt32.max])
        let family = i.pick([UInt32(1), 2, 3])
        let token = i.byte() & 1 == 0 ? relays.tokens.last ?? 0x1000 : 0xDEAD
        request(.allocate, &i, fingerprint: more & 2 != 0) { w throws(STUNEncodingError) in
            if flags & 1 == 0 { try w.append(.requestedTransport, uint32: (flags & 2 != 0 ? 6 : 17) << 24) }
            if flags & 4 != 0 { try w.append(.lifetime, uint32: lifetime) }
            if flags & 8 != 0 { try w.append(.evenPort, length: 1) { $0[0] = flags & 16 != 0 ? 0x80 : 0 } }
            if flags & 32 != 0 { try w.append(.reservationToken, uint64: token) }
            if flags & 64 != 0 { try w.append(.requestedAddressFamily, uint32: family << 24) }
            if flags & 128 != 0 { try w.append(.additionalAddressFamily, uint32: (more & 8 != 0 ? 1 : 2) << 24) }
            if more & 1 != 0 { try w.append(.dontFragment, length: 0) { _ in } }
            if more & 4 != 0 { try w.append(STUNAttributeType(0x7FFF), uint32: 0) }
        }
    }

    func binding(_ i: inout FuzzInput) {
        let t = Int(i.byte()) % tuples.count
        let flags = i.byte()
        let type = STUNMessageType.bindingRequest
        let r = build(
            type, tuple: t, auth: .none, user: users[0], fingerprint: flags & 1 != 0,
            cookie: flags & 2 != 0 ? 0x0102_0304 : stunMagicCookie
        ) { w throws(STUNEncodingError) in
            if flags & 4 != 0 { try w.append(STUNAttributeType(0x7FFE), uint32: 1) }
        }
        if let r { deliver(r, on: t) }
    }

    func sendIndication(_ i: inout FuzzInput) {
        let t = Int(i.byte()) % tuples.count
        let peer = i.pick(peers)
        let flags = i.byte()
        let payload = i.take(Int(i.byte()))
        let type = STUNMessageType(method: .send, class: .indication)
        let r = build(type, tuple: t, auth: .none, user: users[0], fingerprint: flags & 4 != 0) {
            w throws(STUNEncodingError) in
            if flags & 1 == 0 { try w.append(.xorPeerAddress, address: peer) }
            if flags & 2 == 0 { try w.append(.data, bytes: payload) }
        }
        if let r { deliver(r, on: t) }
    }

    func channelData(_ i: inout FuzzInput) {
        let t = Int(i.byte()) % tuples.count
        let channel = i.pick(channelChoices)
        let length = Int(i.u16() % 1500)
        let bySlot = i.byte() & 1 == 1
        if bySlot {
            // The variant for a caller that remembers its slot: only slots the core handed out.
            guard let slot = core.slot(for: tuples[t]) else { return }
            let route = core.routeChannelData(channel: channel, length: length, slot: slot, now: now)
            checkChannelRoute(route, channel: channel, tuple: t)
        } else {
            let route = core.routeChannelData(channel: channel, length: length, from: tuples[t], now: now)
            checkChannelRoute(route, channel: channel, tuple: t)
        }
    }

    func peerData(_ i: inout FuzzInput) {
        let slot = Int(i.byte()) % 4
        let peer = i.pick(peers)
        let length = Int(i.u16() % 1500)
        let route = core.routePeerData(slot: slot, from: peer, length: length, now: now)
        trace("  peer data from \(peer) to slot \(slot): \(route)")
        switch route {
        case .channel(let number, let ft):
            let a = core.allocation(inSlot: slot)
            invariant(a?.fiveTuple == ft, "peer data routed to a client that is not the allocation's")
            invariant(a!.channel(to: peer, now: milliseconds) == number, "peer data on channel \(number) not bound")
            invariant(a!.hasPermission(peer.ip, now: milliseconds), "peer data relayed without a permission")
        case .indication(let ft):
            let a = core.allocation(inSlot: slot)
            invariant(a?.fiveTuple == ft, "peer data routed to a client that is not the allocation's")
            invariant(a!.hasPermission(peer.ip, now: milliseconds), "peer data relayed without a permission")
        case .drop:
            break
        }
    }

    /// Raw bytes from the input as a datagram: STUN to `handleSTUN`, ChannelData to the router.
    func rawDatagram(_ i: inout FuzzInput) {
        let t = Int(i.byte()) % tuples.count
        let bytes = i.take(Int(i.u16() % 600))
        guard let first = bytes.first else { return }
        switch ChannelData.classify(firstByte: first, legacyRange: configuration.legacyChannelNumbers) {
        case .stun:
            deliver(Request(bytes: Array(bytes), key: nil), on: t)
        case .channelData:
            guard let data = try? ChannelData.parse(bytes, legacyRange: configuration.legacyChannelNumbers) else {
                return
            }
            let route = core.routeChannelData(
                channel: data.channel, length: data.payload.count, from: tuples[t], now: now)
            checkChannelRoute(route, channel: data.channel, tuple: t)
        case .other:
            return
        }
    }

    /// A request of any method with attributes taken from the input, then credentials.
    func rawAttributes(_ i: inout FuzzInput) {
        let method = i.pick([
            STUNMethod.allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind, .binding,
            STUNMethod(rawValue: 0x0FF),
        ])
        let types: [STUNAttributeType] = [
            .requestedTransport, .lifetime, .xorPeerAddress, .channelNumber, .evenPort, .reservationToken,
            .requestedAddressFamily, .additionalAddressFamily, .dontFragment, .connectionID, .data,
            .passwordAlgorithms, .passwordAlgorithm, .username, .userhash, .realm, .nonce, .mobilityTicket,
            STUNAttributeType(0x7FFF), STUNAttributeType(0xC001),
        ]
        var attributes: [(STUNAttributeType, [UInt8])] = []
        for _ in 0..<(Int(i.byte()) % 5) {
            let type = i.pick(types)
            let length = Int(i.byte()) % 24
            attributes.append((type, Array(i.take(length))))
        }
        request(method, &i) { w throws(STUNEncodingError) in
            for (type, value) in attributes {
                try appendBytes(&w, type, value)
            }
        }
    }

    /// Completes a Connect the fake provider started: a CONNECTION-ID, or a failure (447).
    func finishConnect(_ i: inout FuzzInput) {
        guard !relays.connects.isEmpty else { return }
        let c = relays.connects.remove(at: Int(i.byte()) % relays.connects.count)
        let succeeded = i.byte() & 1 == 0
        let a = core.allocation(inSlot: c.slot)
        invariant(a != nil, "a Connect in progress outlived its allocation")
        var id: UInt32? = nil
        if succeeded {
            id = nextConnectionID
            relays.waiting[nextConnectionID] = a!.username
            nextConnectionID += 1
        }
        let answer = core.connectResult(
            slot: c.slot, transactionID: c.transactionID, connectionID: id, now: now, response: responseBuffer)
        guard let (length, control) = answer else {
            fatalError("invariant broken: no answer to a Connect whose allocation exists")
        }
        invariant(control == a!.fiveTuple, "Connect answered on another connection")
        let t = tuples.firstIndex(of: control)!
        let v: STUNMessageView
        do {
            v = try STUNMessageView(validating: UnsafeRawBufferPointer(rebasing: responseBuffer[0..<length]))
        } catch {
            fatalError("invariant broken: the answer to Connect does not parse (\(error))")
        }
        invariant(v.type.method == .connect && v.transactionID == c.transactionID, "Connect answer type or ID")
        invariant((v.type.messageClass == .successResponse) == succeeded, "Connect answer class")
        if let key = allocationKeys[t] {
            let ok = key.withUnsafeBytes { k in
                v.integrityOffset != nil ? v.verifyMessageIntegrity(key: k) : v.verifyMessageIntegritySHA256(key: k)
            }
            invariant(ok, "the answer to Connect is not protected with the allocation's key")
        }
        if succeeded, let id, i.byte() & 1 == 0 {
            // The client's data connection binds it (tuple 5: a second TCP connection).
            request(.connectionBind, &i) { w throws(STUNEncodingError) in try w.append(.connectionID, uint32: id) }
        }
    }

    func sweep() {
        core.sweep(now: now)
        recentPolicies = [policy]
        for slot in 0...max(0, relays.highestSlot) {
            guard let a = core.allocation(inSlot: slot) else { continue }
            invariant(a.expiry > milliseconds, "an expired allocation survived a sweep")
            invariant(!a.permissions.contains { $0.expiry <= milliseconds }, "an expired permission survived a sweep")
            invariant(!a.channels.contains { $0.expiry <= milliseconds }, "an expired channel survived a sweep")
            // Removal revokes (Revocation.swift): a static user's allocation ends at the sweep
            // after its key stops being derivable, a REST user's once its username expires.
            if let t = tuples.firstIndex(of: a.fiveTuple), let key = allocationKeys[t] {
                let expiry = RESTCredentials(secrets: []).expiry(of: a.username)
                invariant(
                    policy.credentials.derives(key, for: a.username) || (expiry.map { $0 >= now.unixSeconds } ?? false),
                    "\(a.username)'s allocation survived the removal of its credential")
            }
        }
    }

    // MARK: Delivering and checking answers

    func deliver(_ r: Request, on t: Int) {
        r.bytes.withUnsafeBytes { raw in
            let view: STUNMessageView
            do throws(STUNParseError) {
                view = try STUNMessageView(validating: raw)
            } catch {
                malformed(raw, error, tuple: t)
                return
            }
            let outcome = core.handleSTUN(view, from: tuples[t], now: now, response: responseBuffer, relays: relays)
            trace("  \(view.type) from tuple \(t): \(outcome)")
            handle(outcome, to: view, raw: raw, request: r, tuple: t)
        }
    }

    /// A request the parser refused: at most a 400 that parses and names the request.
    func malformed(_ raw: UnsafeRawBufferPointer, _ error: STUNParseError, tuple t: Int) {
        let outcome = core.handleMalformed(raw, error, from: tuples[t], now: now, response: responseBuffer)
        trace("  malformed (\(error)) from tuple \(t): \(outcome)")
        switch outcome {
        case .none: return
        case .reply(let length):
            let answer = UnsafeRawBufferPointer(rebasing: responseBuffer[0..<length])
            guard let v = try? STUNMessageView(validating: answer) else {
                fatalError("invariant broken: the answer to a malformed request does not parse: \(hexString(answer))")
            }
            invariant(
                v.errorCode == 400 && v.type.messageClass == .errorResponse
                    && v.transactionID == STUNTransactionID(high: raw.be64(8), low: raw.be32(16)),
                "answer to a malformed request: \(v.type) \(String(describing: v.errorCode))")
        default:
            fatalError("invariant broken: a malformed request gave \(outcome)")
        }
    }

    func handle(
        _ outcome: ClientMessageOutcome, to view: STUNMessageView, raw: UnsafeRawBufferPointer, request r: Request,
        tuple t: Int
    ) {
        switch outcome {
        case .reply(let length):
            checkReply(length, to: view, key: r.key, tuple: t)
        case .awaitQuota(let username, let limit):
            guard let quota else { fatalError("invariant broken: awaitQuota without a fleet quota") }
            invariant(view.type.method == .allocate && waiting[t] == nil, "awaitQuota for \(view.type)")
            invariant(limit == configuration.maxAllocationsPerUser, "fleet quota limit \(limit)")
            let box = VerdictBox()
            quota.reserve(username: username, limit: limit) { box.verdict = $0 }
            for (done, verdict) in quota.answered { done(verdict) }
            quota.answered.removeAll()
            waiting[t] = (r, username, box.verdict!)
        case .relay(let handle, let peer, let payload):
            invariant(view.type == STUNMessageType(method: .send, class: .indication), "relayed a \(view.type)")
            let base = UnsafeRawPointer(raw.baseAddress!)
            invariant(
                payload.count == 0
                    || (payload.baseAddress! >= base && payload.baseAddress! + payload.count <= base + raw.count),
                "relayed payload outside the request")
            checkRelayed(handle: handle, peer: peer, tuple: t, channel: nil)
        case .none:
            break
        }
    }

    func checkReply(_ length: Int, to request: STUNMessageView, key: [UInt8]?, tuple t: Int) {
        invariant(length >= stunHeaderSize && length <= responseBuffer.count, "answer of \(length) bytes")
        let answer = UnsafeRawBufferPointer(rebasing: responseBuffer[0..<length])
        if request.isClassicSTUN {
            // RFC 3489 answers carry the request's cookie field, which the parser accepts only in
            // requests: check the header.
            invariant(
                answer.be16(2) == length - stunHeaderSize && answer.be32(4) == request.cookie
                    && answer.be64(8) == request.transactionID.high && answer.be32(16) == request.transactionID.low,
                "answer to an RFC 3489 request: \(hexString(answer))")
            return
        }
        let v: STUNMessageView
        do {
            v = try STUNMessageView(validating: answer)
        } catch {
            fatalError("invariant broken: an answer does not parse (\(error)): \(hexString(answer))")
        }
        invariant(v.transactionID == request.transactionID, "answer with another transaction ID")
        invariant(v.type.method == request.type.method, "answer to \(request.type) is a \(v.type)")
        invariant(
            v.type.messageClass == .successResponse || v.type.messageClass == .errorResponse,
            "answer of class \(v.type.messageClass)")
        if request.type.method != .binding && v.type.messageClass == .successResponse {
            invariant(v.integrityOffset != nil || v.integritySHA256Offset != nil, "success without integrity")
        }
        if let key, v.integrityOffset != nil || v.integritySHA256Offset != nil {
            let ok = key.withUnsafeBytes { k in
                v.integritySHA256Offset != nil
                    ? v.verifyMessageIntegritySHA256(key: k) : v.verifyMessageIntegrity(key: k)
            }
            invariant(ok, "answer not protected with the request's key")
        }
        if request.fingerprintOffset != nil { invariant(v.fingerprintOffset != nil, "answer without FINGERPRINT") }
        trace("    answer \(v.type) \(v.errorCode.map { "error \($0)" } ?? "")")
        if let code = v.errorCode, code == 401 || code == 438 {
            invariant(v.contains(.realm) && v.contains(.nonce), "\(code) without REALM and NONCE")
            nonces[t] = v.string(.nonce)
        }
        if request.type.method == .allocate, v.type.messageClass == .successResponse, let key {
            allocationKeys[t] = key
        }
    }

    func checkChannelRoute(_ route: (handle: Int32, peer: TransportAddress)?, channel: UInt16, tuple t: Int) {
        trace("  ChannelData on \(channel) from tuple \(t): \(String(describing: route))")
        guard let (handle, peer) = route else { return }
        checkRelayed(handle: handle, peer: peer, tuple: t, channel: channel)
    }

    /// Something from the client on tuple `t` is to leave relay `handle` for `peer`.
    func checkRelayed(handle: Int32, peer: TransportAddress, tuple t: Int, channel: UInt16?) {
        guard let slot = core.slot(for: tuples[t]), let a = core.allocation(inSlot: slot) else {
            fatalError("invariant broken: relayed from a client without an allocation")
        }
        let held = relays.open[handle]
        invariant(held?.slot == slot && held?.endpoint.address.family == peer.family, "relayed from a foreign relay")
        invariant(recentPolicies.contains { $0.peers.allows(peer.ip) }, "relayed to a peer the policy denies: \(peer)")
        invariant(a.hasPermission(peer.ip, now: milliseconds), "relayed without a permission")
        if let channel {
            invariant(a.peer(onChannel: channel, now: milliseconds) == peer, "relayed on an unbound channel")
        }
    }

    // MARK: Invariants

    /// The routing state as the core's effects describe it, by slot: permissions (peer → expiry)
    /// and channels (number → peer, expiry). A kernel fast path keeps this copy; it must equal
    /// the core's own live state after every operation.
    var mirrorPermissions: [Int: [IPAddress: UInt64]] = [:]
    var mirrorChannels: [Int: [UInt16: (peer: TransportAddress, expiry: UInt64)]] = [:]

    /// Carries out the core's effects as the I/O layer would: relays closed, the mirror updated.
    func drainEffects() {
        for effect in core.effects {
            switch effect {
            case .closeRelay(let endpoint): relays.closeRelay(endpoint)
            case .permissionInstalled(let slot, let peer, let expiry):
                mirrorPermissions[slot, default: [:]][peer] = expiry
            case .permissionRemoved(let slot, let peer):
                invariant(mirrorPermissions[slot]?[peer] != nil, "removed a permission never installed")
                mirrorPermissions[slot]?[peer] = nil
            case .channelBound(let slot, let channel, let peer, let expiry):
                mirrorChannels[slot, default: [:]][channel] = (peer, expiry)
            case .channelRemoved(let slot, let channel, let peer):
                invariant(mirrorChannels[slot]?[channel]?.peer == peer, "removed a channel never bound so")
                mirrorChannels[slot]?[channel] = nil
            case .allocationEnded(let slot):
                mirrorPermissions[slot] = nil
                mirrorChannels[slot] = nil
            }
        }
        core.effects.removeAll()
    }

    func checkInvariants() {
        drainEffects()
        let count = core.allocationCount
        invariant(count == shared.allocationCount, "core holds \(count), shared state counts \(shared.allocationCount)")
        invariant(count <= configuration.maxAllocations, "\(count) allocations over the maximum")
        var found = 0
        var relaysHeld = 0
        var perUser: [String: Int] = [:]
        let t = milliseconds
        for slot in 0...max(0, relays.highestSlot) {
            guard let a = core.allocation(inSlot: slot) else { continue }
            found += 1
            invariant(core.slot(for: a.fiveTuple) == slot, "allocation in slot \(slot) not found by its 5-tuple")
            invariant(!a.relays.isEmpty && a.relays.count <= 2, "allocation with \(a.relays.count) relays")
            invariant(
                a.relays.count == 1 || a.relays[0].address.family != a.relays[1].address.family,
                "two relays of one family")
            for r in a.relays {
                invariant(relays.open[r.handle]?.slot == slot, "relay \(r.handle) of slot \(slot) is not open for it")
                invariant(relays.open[r.handle]?.endpoint == r, "relay \(r.handle) differs from the one opened")
            }
            relaysHeld += a.relays.count
            perUser[a.username, default: 0] += 1
            invariant(
                a.expiry <= t + UInt64(configuration.maxLifetime) * 1000, "allocation lifetime over the maximum")
            var permissions = 0
            for p in a.permissions where p.expiry > t { permissions += 1 }
            invariant(
                permissions <= configuration.maxPermissionsPerAllocation,
                "\(permissions) live permissions over the maximum")
            var channels = 0
            for c in a.channels where c.expiry > t {
                channels += 1
                invariant(channelRange.contains(c.number), "channel \(c.number) out of range")
                var same = 0
                for d in a.channels where d.expiry > t && (d.number == c.number || d.peer == c.peer) { same += 1 }
                invariant(same == 1, "channel \(c.number) bound twice")
            }
            invariant(channels <= configuration.maxChannelsPerAllocation, "\(channels) live channels over the maximum")
            // The effects' copy of the routing state equals the core's live state.
            var livePermissions: [IPAddress: UInt64] = [:]
            for p in a.permissions where p.expiry > t { livePermissions[p.peer] = p.expiry }
            let mirroredPermissions = (mirrorPermissions[slot] ?? [:]).filter { $0.value > t }
            invariant(livePermissions == mirroredPermissions, "effects' permissions differ from the core's in \(slot)")
            var liveChannels: [UInt16: String] = [:]
            for c in a.channels where c.expiry > t { liveChannels[c.number] = "\(c.peer)@\(c.expiry)" }
            var mirroredChannels: [UInt16: String] = [:]
            for (n, c) in mirrorChannels[slot] ?? [:] where c.expiry > t {
                mirroredChannels[n] = "\(c.peer)@\(c.expiry)"
            }
            invariant(liveChannels == mirroredChannels, "effects' channels differ from the core's in slot \(slot)")
        }
        for (slot, p) in mirrorPermissions where core.allocation(inSlot: slot) == nil {
            invariant(p.values.allSatisfy { $0 <= t }, "effects keep a live permission for free slot \(slot)")
        }
        for (slot, c) in mirrorChannels where core.allocation(inSlot: slot) == nil {
            invariant(c.values.allSatisfy { $0.expiry <= t }, "effects keep a live channel for free slot \(slot)")
        }
        invariant(found == count, "core reports \(count) allocations and holds \(found)")
        invariant(relays.open.count == relaysHeld, "\(relays.open.count) relays open for \(relaysHeld) held")
        for u in users {
            let n = perUser[u.name, default: 0]
            invariant(n <= configuration.maxAllocationsPerUser, "\(u.name) holds \(n) allocations")
            invariant(shared.allocationCount(username: u.name) == n, "\(u.name)'s quota count is off")
            if let quota {
                var outstanding = 0
                for case let w? in waiting where w.username == u.name && FakeQuota.counts(w.verdict) {
                    outstanding += 1
                }
                let fleet = quota.counts[u.name, default: 0]
                invariant(
                    fleet == n + outstanding,
                    "fleet quota counts \(fleet) for \(u.name): \(n) allocations, \(outstanding) waiting")
            }
        }
        for event in core.events {
            switch event {
            case .created: live += 1
            case .ended: live -= 1
            }
        }
        core.events.removeAll()
        invariant(live == count, "events say \(live) allocations, core holds \(count)")
        let c = core.counters
        invariant(
            notBelow(c.drops, counters.drops) && notBelow(c.authFailures, counters.authFailures)
                && notBelow(c.requests, counters.requests) && notBelow(c.errorResponses, counters.errorResponses)
                && notBelow(c.allocationsCreated, counters.allocationsCreated)
                && notBelow(c.relayedPacketsClientToPeer, counters.relayedPacketsClientToPeer)
                && notBelow(c.relayedBytesClientToPeer, counters.relayedBytesClientToPeer)
                && notBelow(c.relayedPacketsPeerToClient, counters.relayedPacketsPeerToClient)
                && notBelow(c.relayedBytesPeerToClient, counters.relayedBytesPeerToClient)
                && c.overflowChallenges >= counters.overflowChallenges
                && notBelow(c.quotaRefusals, counters.quotaRefusals) && notBelow(c.redirects, counters.redirects),
            "a counter went down")
        counters = c
    }
}

/// Whether no element of `now` is below its counterpart in `before`.
func notBelow(_ now: [UInt64], _ before: [UInt64]) -> Bool {
    for i in now.indices where now[i] < before[i] { return false }
    return now.count == before.count
}

/// Operations per input: enough for an allocation's whole life (allocate, permission, channel,
/// data both ways, refresh, expiry), few enough to keep runs fast.
let maxOperations = 24

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(UnsafeRawBufferPointer(start: data, count: size))
    let world = World(options: input.byte(), more: input.byte())
    var n = 0
    while !input.isAtEnd && n < maxOperations {
        world.step(&input)
        n += 1
    }
    return 0
}
