public import STUNCodec
import Synchronization

/// The transport between a client and the server.
public enum TransportProtocol: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// Plain UDP.
    case udp
    /// TCP, with STUN and ChannelData framed on the stream (RFC 8656 §3.1).
    case tcp
    /// TLS over TCP.
    case tls
    /// DTLS over UDP (RFC 7350).
    case dtls

    /// `udp`, `tcp`, `tls` or `dtls`, as used in logs and metric labels.
    public var description: String {
        switch self {
        case .udp: "udp"
        case .tcp: "tcp"
        case .tls: "tls"
        case .dtls: "dtls"
        }
    }
}

/// The 5-tuple that names an allocation (RFC 8656 §2): client address, server address, transport.
public struct FiveTuple: Hashable, Sendable, CustomStringConvertible {
    /// The client's address as the server sees it (after any NAT).
    public var client: TransportAddress
    /// The server's address the client reached (the listening socket's address).
    public var server: TransportAddress
    /// The transport between them.
    public var transport: TransportProtocol

    /// Makes a 5-tuple.
    @inlinable public init(client: TransportAddress, server: TransportAddress, transport: TransportProtocol) {
        self.client = client
        self.server = server
        self.transport = transport
    }

    /// `transport client->server`, such as `udp 203.0.113.5:40000->192.0.2.10:3478`.
    public var description: String { "\(transport) \(client)->\(server)" }
}

/// Time as the core sees it: passed in by the caller, never read from a clock here.
public struct CoreTime: Sendable, Hashable {
    /// Monotonic milliseconds since an arbitrary start.
    public var milliseconds: UInt64
    /// Wall-clock seconds since 1970 (REST credential expiry).
    public var unixSeconds: Int64

    /// Makes a time from a monotonic reading in milliseconds and a wall-clock reading in seconds.
    @inlinable public init(milliseconds: UInt64, unixSeconds: Int64) {
        self.milliseconds = milliseconds
        self.unixSeconds = unixSeconds
    }

    /// Whole monotonic seconds.
    @inlinable public var seconds: UInt64 { milliseconds / 1000 }
}

/// Settings of the TURN logic. Values are seconds unless named otherwise.
public struct CoreConfiguration: Sendable {
    /// SOFTWARE attribute; nil sends none (smaller answers limit reflection).
    public var software: String?
    /// Allocation lifetime when the client asks for less or nothing (RFC 8656: 600 s).
    public var defaultLifetime: UInt32 = 600
    /// The longest lifetime granted (RFC 8656 recommends at most 3600 s).
    public var maxLifetime: UInt32 = 3600
    /// Permission lifetime (RFC 8656 §9: exactly 300 s).
    public var permissionLifetime: UInt32 = 300
    /// Channel binding lifetime (RFC 8656 §12: 600 s).
    public var channelLifetime: UInt32 = 600
    /// Seconds a nonce stays fresh.
    public var nonceLifetime: UInt64 = 600
    /// Allocations on the whole server.
    public var maxAllocations = 10_000
    /// Allocations one username may hold (RFC 8656 §7.2: quota per username).
    public var maxAllocationsPerUser = 10
    /// Peer IPs one allocation may hold permissions for.
    public var maxPermissionsPerAllocation = 32
    /// Channels one allocation may bind.
    public var maxChannelsPerAllocation = 32
    /// Relay bandwidth cap per allocation, bytes per second each way; 0 = none.
    public var bandwidthPerAllocation = 0
    /// Unauthenticated answers per source IP per second (Binding, 401, 400, 420).
    public var unauthenticatedRatePerSecond = 50
    /// Once a source IP's unauthenticated answers for the second are spent, bytes of 401/438
    /// challenges still sent to it that second (0: none). Keeps a client whose IP is spoofed by a
    /// flood reachable, within a bounded reflection.
    public var challengeOverflowBytesPerSecond = 196_608
    /// Reason phrases in error answers to unauthenticated requests (off: smaller answers).
    public var unauthenticatedReasonPhrases = false
    /// Relay families this server can allocate.
    public var relayFamilies: Set<AddressFamily> = [.ipv4]
    /// Private relay IP → public IP advertised in XOR-RELAYED-ADDRESS (servers behind 1:1 NAT).
    public var externalAddresses: [IPAddress: IPAddress] = [:]
    /// Password algorithms offered, in order of preference (RFC 8489 §14.11).
    public var passwordAlgorithms: [PasswordAlgorithm] = [.sha256, .md5]
    /// Servers to send new allocations to (300 Try Alternate) when this one is full or draining.
    public var alternateServers: [TransportAddress] = []
    /// ALTERNATE-DOMAIN sent with ALTERNATE-SERVER to TLS clients.
    public var alternateDomain: String?
    /// Accept RFC 5766 channel numbers 0x5000–0x7FFF too (RFC 8656 reserves them; coturn's
    /// turnutils_uclient still uses them). Off by default.
    public var legacyChannelNumbers = false
    /// Whether RFC 6062 TCP relays may be requested (REQUESTED-TRANSPORT TCP).
    public var tcpRelaysEnabled = true

    /// The defaults listed on each property.
    public init() {}
}

/// What the operator can change at run time (reload): credentials and address policy.
public struct CorePolicy: Sendable {
    /// The static users, REST secrets and realm.
    public var credentials: CredentialStore
    /// Which peer addresses allocations may reach.
    public var peers: PeerPolicy
    /// Which client addresses are refused service.
    public var bannedClients: ClientBanList

    /// Makes a policy; by default with the default peer policy and no banned clients.
    public init(credentials: CredentialStore, peers: PeerPolicy = PeerPolicy(), bannedClients: ClientBanList = .init())
    {
        self.credentials = credentials
        self.peers = peers
        self.bannedClients = bannedClients
    }
}

/// State shared by every shard: the policy in force, the draining flag and the quotas that span
/// shards. Touched on the control path only (Allocate, Refresh, reload), never per packet.
public final class SharedServerState: Sendable {
    let policyBox: Mutex<CorePolicy>
    let perUser = Mutex<[String: Int]>([:])
    let total = Atomic<Int>(0)
    let drainingFlag = Atomic<Bool>(false)
    let capacityOverride = Atomic<Int>(-1)
    let generation = Atomic<Int>(0)
    /// What a fleet decides for this node (nothing without `[fleet]`).
    public let fleet = FleetHooks()

    /// Shared state with `policy` in force, no allocations, not draining and no capacity override.
    public init(policy: CorePolicy) { policyBox = Mutex(policy) }

    /// The policy in force.
    public var policy: CorePolicy { policyBox.withLock { $0 } }

    /// Replaces the policy (reload); shards see it on their next control-path decision and on
    /// their next sweep, which closes allocations of newly banned clients.
    public func replacePolicy(_ policy: CorePolicy) {
        policyBox.withLock { $0 = policy }
        generation.add(1, ordering: .relaxed)
    }

    /// Increases every time the policy is replaced.
    public var policyGeneration: Int { generation.load(ordering: .relaxed) }

    /// Whether new allocations are being turned away (drain before shutdown).
    public var isDraining: Bool {
        get { drainingFlag.load(ordering: .relaxed) }
    }

    /// Starts or stops draining.
    public func setDraining(_ on: Bool) { drainingFlag.store(on, ordering: .relaxed) }

    /// Allocations on the whole server now.
    public var allocationCount: Int { total.load(ordering: .relaxed) }

    /// Allocations `username` holds on the whole server now, as counted against its quota
    /// (`CoreConfiguration.maxAllocationsPerUser`).
    public func allocationCount(username: String) -> Int { perUser.withLock { $0[username, default: 0] } }

    /// Tries to take one allocation slot for `username`; returns the error code on refusal.
    func reserve(username: String, maxTotal: Int, maxPerUser: Int) -> Int? {
        let override = capacityOverride.load(ordering: .relaxed)
        let limit = override >= 0 ? override : maxTotal
        if total.load(ordering: .relaxed) >= limit { return 508 }
        let ok = perUser.withLock { counts -> Bool in
            let n = counts[username, default: 0]
            if n >= maxPerUser { return false }
            counts[username] = n + 1
            return true
        }
        if !ok { return 486 }
        total.add(1, ordering: .relaxed)
        return nil
    }

    /// Returns a slot taken by `reserve`, and the user's count in the fleet-wide quota.
    func release(username: String) {
        fleet.quota?.release(username: username)
        perUser.withLock { counts in
            let n = counts[username, default: 1] - 1
            if n <= 0 { counts[username] = nil } else { counts[username] = n }
        }
        total.subtract(1, ordering: .relaxed)
    }

    /// Caps total allocations below the configured maximum (tests, operators); -1 removes the cap.
    public func setCapacityOverride(_ n: Int) { capacityOverride.store(n, ordering: .relaxed) }

    /// The server-wide allocation limit in force given the configured maximum.
    public func effectiveCapacity(configured: Int) -> Int {
        let o = capacityOverride.load(ordering: .relaxed)
        return o >= 0 ? o : configured
    }
}

/// A bound relay socket as the core sees it.
public struct RelayEndpoint: Sendable, Hashable {
    /// The I/O layer's name for the socket (a file descriptor).
    public var handle: Int32
    /// The local address it is bound to.
    public var address: TransportAddress

    /// Names a bound relay socket.
    public init(handle: Int32, address: TransportAddress) {
        self.handle = handle
        self.address = address
    }
}

/// What the core asks of the I/O layer when it allocates.
public struct RelayRequest: Sendable, Hashable {
    /// The address family of the relayed address.
    public var family: AddressFamily
    /// RFC 8656 EVEN-PORT.
    public var evenPort = false
    /// EVEN-PORT with R=1: also reserve the next port and return a token for it.
    public var reserveNextPort = false
    /// A RESERVATION-TOKEN to redeem.
    public var reservationToken: UInt64?
    /// Set DF on the relay socket.
    public var dontFragment = false
    /// The shard-local slot the allocation will occupy (so the socket's events find it).
    public var slot: Int
    /// A UDP relay socket, or an RFC 6062 TCP relay (a listening socket for peer connections).
    public var transport: RelayTransport = .udp

    /// A request for a UDP relay of `family` for the allocation in `slot`, with no other options.
    public init(family: AddressFamily, slot: Int) {
        self.family = family
        self.slot = slot
    }
}

/// The I/O layer's answer to a `RelayRequest`.
public enum RelayOpenResult: Sendable {
    /// The socket is bound: its endpoint and, for EVEN-PORT with R=1, the RESERVATION-TOKEN of the
    /// next port.
    case opened(RelayEndpoint, reservationToken: UInt64?)
    /// No port or socket could be had (508), or the token is unknown/expired (508).
    case failed(code: STUNErrorCode)
}

/// What a core call needs from the I/O layer at once, while it decides: a relay socket for an
/// Allocate, an RFC 6062 connect or bind. Passed to each call that may need it and never kept by
/// the core (closing a relay is an effect, `CoreEffect.closeRelay`). Implemented by the I/O layer
/// (real sockets) and by tests (fakes); called on the shard's queue only.
public protocol RelaySocketProvider: AnyObject {
    /// Binds a relay socket as asked.
    func openRelay(_ request: RelayRequest) -> RelayOpenResult
    /// RFC 6062 Connect: starts a TCP connection from the relayed address to `peer`. Returns nil
    /// when started (the I/O layer answers later through `TURNServerCore.connectResult`), or an
    /// error code (446 when a connection to that peer exists or is being made).
    func startConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> STUNErrorCode?
    /// RFC 6062 ConnectionBind: hands the peer data connection `id` (of an allocation owned by
    /// `username`) to the client data connection `dataConnection`. False when there is no such
    /// pending connection.
    func bindConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool
}

extension RelaySocketProvider {
    /// Providers without TCP relays refuse Connect.
    public func startConnect(slot: Int, relay: RelayEndpoint, peer: TransportAddress, transactionID: STUNTransactionID)
        -> STUNErrorCode?
    { .connectionTimeoutOrFailure }

    /// Providers without TCP relays have no connections to bind.
    public func bindConnection(id: UInt32, username: String, dataConnection: FiveTuple) -> Bool { false }
}
