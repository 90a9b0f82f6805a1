import STUNCodec
import TURNCore
import Testing

/// A relay socket provider that opens nothing: it hands out made-up handles (100, 101, …) and
/// addresses (198.51.100.1:50000+n, [2001:db8::1]:50000+n), records every open and close, and
/// fails on demand.
final class FakeRelays: RelaySocketProvider {
    var requests: [RelayRequest] = []
    var opened: [RelayEndpoint] = []
    /// The core under test (its effects say what it closed); the harness sets it.
    weak var core: TURNServerCore?
    /// Every relay the core closed so far (`CoreEffect.closeRelay`, never drained in these tests).
    var closed: [RelayEndpoint] {
        core?.effects.compactMap { if case .closeRelay(let e) = $0 { e } else { nil } } ?? []
    }
    /// Families this fake can bind; others fail with 440 like the real I/O layer.
    var families: Set<AddressFamily> = [.ipv4, .ipv6]
    /// When set, every open fails with this code.
    var failWith: Int?
    var counter = 0

    func openRelay(_ request: RelayRequest) -> RelayOpenResult {
        requests.append(request)
        if let failWith { return .failed(code: STUNErrorCode(rawValue: failWith)!) }
        guard families.contains(request.family) else { return .failed(code: .addressFamilyNotSupported) }
        let n = counter
        counter += 1
        let ip = request.family == .ipv4 ? IPAddress("198.51.100.1")! : IPAddress("2001:db8::1")!
        let endpoint = RelayEndpoint(
            handle: Int32(100 + n), address: TransportAddress(ip: ip, port: UInt16(50_000 + n)))
        opened.append(endpoint)
        return .opened(endpoint, reservationToken: request.reserveNextPort ? 0x0102_0304_0506_0708 : nil)
    }

    /// Endpoints opened and not yet closed.
    var open: [RelayEndpoint] { opened.filter { !closed.contains($0) } }
}

/// What the core did with one message, with everything copied out of the borrowed buffers.
enum Outcome {
    case reply(STUNMessage, [UInt8])
    case relay(handle: Int32, peer: TransportAddress, payload: [UInt8])
    case none
    /// The Allocate waits for the fleet quota.
    case awaitQuota(username: String, limit: Int)

    var message: STUNMessage? {
        if case .reply(let m, _) = self { return m }
        return nil
    }
    var raw: [UInt8]? {
        if case .reply(_, let b) = self { return b }
        return nil
    }
    var errorCode: Int? { message?.errorCode }
    var isSuccess: Bool { message?.type.messageClass == .successResponse }
    var isNone: Bool {
        if case .none = self { return true }
        return false
    }
}

let realm = "example.org"
let serverAddress = TransportAddress("192.0.2.10:3478")!

func md5Key(_ user: String, _ realm: String, _ password: String) -> [UInt8] {
    Array("\(user):\(realm):\(password)".utf8).withUnsafeBytes { STUNDigest.md5($0) }
}

func sha256Key(_ user: String, _ realm: String, _ password: String) -> [UInt8] {
    Array("\(user):\(realm):\(password)".utf8).withUnsafeBytes { STUNDigest.sha256($0) }
}

func tuple(_ client: String, transport: TransportProtocol = .udp) -> FiveTuple {
    FiveTuple(client: TransportAddress(client)!, server: serverAddress, transport: transport)
}

func peer(_ text: String) -> TransportAddress { TransportAddress(text)! }

/// A core under test with a fake relay provider and a clock the test moves.
final class Harness {
    let relays = FakeRelays()
    let shared: SharedServerState
    let core: TURNServerCore
    var now = CoreTime(milliseconds: 5_000_000, unixSeconds: 1_700_000_000)

    static let defaultUsers = ["alice": "wonderland", "bob": "builder", "user": "pass"]

    init(
        configure: (inout CoreConfiguration) -> Void = { _ in }, users: [String: String] = Harness.defaultUsers,
        rest: RESTCredentials? = nil, peers: PeerPolicy = PeerPolicy(allowed: [CIDR("127.0.0.0/8")!]),
        banned: ClientBanList = .init()
    ) {
        var c = CoreConfiguration()
        c.relayFamilies = [.ipv4]
        configure(&c)
        shared = SharedServerState(
            policy: CorePolicy(
                credentials: CredentialStore(realm: realm, passwords: users, rest: rest), peers: peers,
                bannedClients: banned))
        core = TURNServerCore(configuration: c, shared: shared)
        relays.core = core
    }

    func advance(seconds: Double) {
        now.milliseconds += UInt64(seconds * 1000)
        now.unixSeconds += Int64(seconds)
    }

    /// Hands `bytes` to the core as a datagram from `from`.
    func send(_ bytes: [UInt8], from: FiveTuple) -> Outcome {
        bytes.withUnsafeBytes { raw -> Outcome in
            let view: STUNMessageView
            do {
                view = try STUNMessageView(validating: raw)
            } catch {
                Issue.record("test built an invalid message: \(error)")
                return .none
            }
            var out = [UInt8](repeating: 0, count: 1500)
            return out.withUnsafeMutableBytes { buffer -> Outcome in
                switch core.handleSTUN(view, from: from, now: now, response: buffer, relays: relays) {
                case .reply(let length):
                    let bytes = Array(buffer[0..<length])
                    do {
                        return .reply(try STUNMessage(parsing: bytes), bytes)
                    } catch {
                        Issue.record("core answered with an unparseable message: \(error)")
                        return .none
                    }
                case .relay(let handle, let peer, let payload):
                    return .relay(handle: handle, peer: peer, payload: Array(payload))
                case .none:
                    return .none
                case .awaitQuota(let username, let limit):
                    return .awaitQuota(username: username, limit: limit)
                }
            }
        }
    }

    func send(_ message: STUNMessage, from: FiveTuple) -> Outcome {
        send(try! message.encoded(), from: from)
    }

    func counter(_ reason: DropReason) -> UInt64 { core.counters.drops[reason.rawValue] }
    func authFailures(_ reason: AuthFailure) -> UInt64 { core.counters.authFailures[reason.rawValue] }
}

/// A client on one 5-tuple doing the long-term credential dance (RFC 8489 §9.2).
final class Client {
    let h: Harness
    let fiveTuple: FiveTuple
    var username: String
    var password: String
    var realmValue: String?
    var nonce: String?
    /// The PASSWORD-ALGORITHMS list of the last 401/438.
    var offeredAlgorithms: [PasswordAlgorithm] = []
    /// Retry once with the new nonce after a 438, as clients do.
    var retryStale = true

    init(_ h: Harness, _ client: String = "203.0.113.5:40000", user: String = "alice", password: String = "wonderland")
    {
        self.h = h
        self.fiveTuple = tuple(client)
        self.username = user
        self.password = password
    }

    var key: [UInt8] { md5Key(username, realmValue ?? realm, password) }

    /// Sends `method` without credentials and keeps the REALM/NONCE of the 401 it must draw.
    /// An Allocate carries REQUESTED-TRANSPORT unless `attributes` are given: an unauthenticated
    /// request without what its method requires is dropped, not challenged.
    @discardableResult
    func challenge(_ method: STUNMethod = .allocate, attributes: [STUNAttribute]? = nil) -> Outcome {
        let attributes = attributes ?? (method == .allocate ? [.requestedTransport(17)] : [])
        let outcome = h.send(
            STUNMessage(type: .init(method: method, class: .request), attributes: attributes), from: fiveTuple)
        learn(outcome)
        return outcome
    }

    func learn(_ outcome: Outcome) {
        guard let m = outcome.message, m.errorCode == 401 || m.errorCode == 438 else { return }
        if case .realm(let r)? = m.first(.realm) { realmValue = r }
        if case .nonce(let n)? = m.first(.nonce) { nonce = n }
        if case .passwordAlgorithms(let list)? = m.first(.passwordAlgorithms) { offeredAlgorithms = list }
    }

    /// The attributes a retry carries: USERNAME, REALM, NONCE.
    func credentials() -> [STUNAttribute] {
        [.username(username), .realm(realmValue ?? realm), .nonce(nonce ?? "")]
    }

    /// Sends an authenticated request (MD5 key, MESSAGE-INTEGRITY), drawing the 401 first if no
    /// nonce is known yet.
    func request(
        _ method: STUNMethod, _ attributes: [STUNAttribute] = [], transactionID: STUNTransactionID = .random(),
        fingerprint: Bool = false
    ) -> Outcome {
        if nonce == nil {
            var first = challenge(method, attributes: attributes)
            if first.message == nil {
                // Dropped unanswered for lacking a required attribute: draw the 401 as a client
                // would have, with a complete request.
                first = challenge(.allocate)
            }
            #expect(first.errorCode == 401, "first request must draw a 401, got \(String(describing: first.message))")
        }
        let m = STUNMessage(
            type: .init(method: method, class: .request), transactionID: transactionID,
            attributes: attributes + credentials())
        let outcome = h.send(try! m.encoded(key: key, integrity: [.sha1], fingerprint: fingerprint), from: fiveTuple)
        if retryStale, outcome.errorCode == 438 {
            learn(outcome)
            let again = STUNMessage(
                type: .init(method: method, class: .request), transactionID: .random(),
                attributes: attributes + credentials())
            return h.send(try! again.encoded(key: key, integrity: [.sha1], fingerprint: fingerprint), from: fiveTuple)
        }
        return outcome
    }

    /// Allocate asking for UDP.
    func allocate(_ extra: [STUNAttribute] = [], transactionID: STUNTransactionID = .random()) -> Outcome {
        request(.allocate, [.requestedTransport(17)] + extra, transactionID: transactionID)
    }

    func createPermission(_ peers: [TransportAddress]) -> Outcome {
        request(.createPermission, peers.map { .xorPeerAddress($0) })
    }

    func channelBind(_ number: UInt16, _ peer: TransportAddress) -> Outcome {
        request(.channelBind, [.channelNumber(number), .xorPeerAddress(peer)])
    }

    func refresh(_ lifetime: UInt32?) -> Outcome {
        request(.refresh, lifetime.map { [.lifetime($0)] } ?? [])
    }

    /// The slot of this client's allocation.
    var slot: Int? { h.core.slot(for: fiveTuple) }

    /// A Send indication to `peer` (never authenticated).
    func sendIndication(to peer: TransportAddress, _ payload: [UInt8]) -> Outcome {
        h.send(
            STUNMessage(
                type: .init(method: .send, class: .indication), attributes: [.xorPeerAddress(peer), .data(payload)]),
            from: fiveTuple)
    }
}

extension STUNMessage {
    func all(_ type: STUNAttributeType) -> [STUNAttribute] { attributes.filter { $0.type == type } }

    var lifetime: UInt32? {
        if case .lifetime(let v)? = first(.lifetime) { return v }
        return nil
    }

    var relayed: [TransportAddress] {
        all(.xorRelayedAddress).compactMap {
            if case .xorRelayedAddress(let a) = $0 { return a }
            return nil
        }
    }
}

/// Verifies MESSAGE-INTEGRITY (or -SHA256) of raw response bytes under `key`.
func verifies(_ raw: [UInt8], key: [UInt8], sha256: Bool = false) -> Bool {
    raw.withUnsafeBytes { b in
        guard let v = try? STUNMessageView(validating: b) else { return false }
        return key.withUnsafeBytes { k in
            sha256 ? v.verifyMessageIntegritySHA256(key: k) : v.verifyMessageIntegrity(key: k)
        }
    }
}
