internal import CTraverseSystem
import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// A socket error with the failing call and errno.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    /// The system call.
    public let call: String
    /// errno.
    public let code: Int32
    /// Readable form.
    public var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Monotonic clock in nanoseconds.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall-clock Unix time in seconds.
public func unixTimeSeconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec)
}

/// sockaddr conversions.
enum SocketAddress {
    static func withSockaddr<R>(_ a: TransportAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = sockaddr_storage()
        let length = fill(&storage, a)
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    static func fill(_ storage: inout sockaddr_storage, _ a: TransportAddress) -> socklen_t {
        storage = sockaddr_storage()
        switch a.ip {
        case .v4(let ip):
            return withUnsafeMutableBytes(of: &storage) { raw in
                let p = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                p.pointee.sin_family = sa_family_t(AF_INET)
                p.pointee.sin_port = a.port.bigEndian
                p.pointee.sin_addr.s_addr = ip.bigEndian
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            }
        case .v6:
            let bytes = a.ip.bytes
            return withUnsafeMutableBytes(of: &storage) { raw in
                let p = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                p.pointee.sin6_family = sa_family_t(AF_INET6)
                p.pointee.sin6_port = a.port.bigEndian
                withUnsafeMutableBytes(of: &p.pointee.sin6_addr) { $0.copyBytes(from: bytes) }
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }

    static func decode(_ storage: sockaddr_storage) -> TransportAddress? {
        var s = storage
        return withUnsafeBytes(of: &s) { raw -> TransportAddress? in
            let family = raw.load(fromByteOffset: 0, as: sa_family_t.self)
            if family == sa_family_t(AF_INET) {
                let p = raw.load(as: sockaddr_in.self)
                return TransportAddress(
                    ip: .v4(UInt32(bigEndian: p.sin_addr.s_addr)), port: UInt16(bigEndian: p.sin_port))
            } else if family == sa_family_t(AF_INET6) {
                let p = raw.load(as: sockaddr_in6.self)
                let ip = withUnsafeBytes(of: p.sin6_addr) { IPAddress(bytes: $0) }
                return ip.map { TransportAddress(ip: $0, port: UInt16(bigEndian: p.sin6_port)) }
            }
            return nil
        }
    }
}

/// A non-blocking UDP socket connected to one server address, with large buffers and the
/// kernel's per-socket drop counter (SO_RXQ_OVFL) turned on.
struct UDPSocket {
    let fd: Int32

    init(connectTo server: TransportAddress, bufferBytes: Int) throws(SocketError) {
        let family = server.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(
            family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(call: "socket", code: errno) }
        var size = Int32(bufferBytes)
        // SO_RCVBUFFORCE/SO_SNDBUFFORCE pass rmem_max when running as root; fall back otherwise.
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, socklen_t(MemoryLayout<Int32>.size))
        let rc = SocketAddress.withSockaddr(server) { connect(fd, $0, $1) }
        guard rc == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw SocketError(call: "connect", code: e)
        }
        self.fd = fd
    }

    /// Sends one datagram; false if it could not be sent now.
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) == $0.count }
    }

    func close() { _ = Glibc.close(fd) }
}

/// Fixed arrays of datagram slots, iovecs and mmsghdrs at stable addresses, for sendmmsg and
/// recvmmsg. Built once; never reallocated.
final class DatagramBatch {
    let capacity: Int
    let slotSize: Int
    let buffers: UnsafeMutableRawPointer
    let iovecs: UnsafeMutablePointer<iovec>
    let headers: UnsafeMutablePointer<traverse_mmsghdr>
    let controls: UnsafeMutableRawPointer
    let controlSize: Int
    /// Datagrams filled (send side).
    var count = 0

    init(capacity: Int, slotSize: Int, withControl: Bool) {
        self.capacity = capacity
        self.slotSize = slotSize
        buffers = .allocate(byteCount: capacity * slotSize, alignment: 64)
        buffers.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * slotSize)
        iovecs = .allocate(capacity: capacity)
        headers = .allocate(capacity: capacity)
        controlSize = withControl ? max(64, traverse_cmsg_space(8)) : 0
        controls = .allocate(byteCount: max(1, capacity * controlSize), alignment: 16)
        for i in 0..<capacity {
            iovecs[i] = iovec(iov_base: buffers + i * slotSize, iov_len: slotSize)
            headers[i] = traverse_mmsghdr()
            headers[i].msg_hdr.msg_iov = iovecs + i
            headers[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        buffers.deallocate()
        iovecs.deallocate()
        headers.deallocate()
        controls.deallocate()
    }

    @inline(__always) func slot(_ i: Int) -> UnsafeMutableRawPointer { buffers + i * slotSize }

    /// Sets datagram `i`'s length for sending.
    @inline(__always) func setLength(_ i: Int, _ n: Int) { iovecs[i].iov_len = n }

    /// Sends the `count` queued datagrams on `fd`; returns how many the kernel took.
    func flush(fd: Int32) -> (sent: Int, errno: Int32) {
        var done = 0
        var err: Int32 = 0
        while done < count {
            let n = traverse_sendmmsg(fd, headers + done, UInt32(count - done), Int32(MSG_DONTWAIT))
            if n <= 0 {
                err = n < 0 ? errno : 0
                if err == EINTR { continue }
                break
            }
            done += Int(n)
        }
        count = 0
        return (done, err)
    }

    /// Receives up to `capacity` datagrams from `fd`; returns the count (0 when none, -1 on error).
    func receive(fd: Int32) -> Int {
        for i in 0..<capacity {
            iovecs[i].iov_len = slotSize
            headers[i].msg_len = 0
            headers[i].msg_hdr.msg_name = nil
            headers[i].msg_hdr.msg_namelen = 0
            headers[i].msg_hdr.msg_flags = 0
            if controlSize > 0 {
                headers[i].msg_hdr.msg_control = controls + i * controlSize
                headers[i].msg_hdr.msg_controllen = controlSize
            }
        }
        let n = traverse_recvmmsg(fd, headers, UInt32(capacity), Int32(MSG_DONTWAIT))
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1 }
        return Int(n)
    }

    @inline(__always) func receivedLength(_ i: Int) -> Int { Int(headers[i].msg_len) }
    @inline(__always) func truncated(_ i: Int) -> Bool { headers[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 }
    @inline(__always) func kernelDrops(_ i: Int) -> Int64 {
        withUnsafePointer(to: &headers[i].msg_hdr) { traverse_cmsg_rxq_overflow($0) }
    }
}

/// Readiness over the generator's sockets with poll(2). (Glibc's Swift overlay does not expose
/// epoll; with at most a few thousand sockets and about a thousand wakeups per second poll costs
/// little, and readable sockets are drained with recvmmsg.)
final class EventPoll {
    var fds: [pollfd] = []
    var ready: [Int] = []

    init() throws(SocketError) {}

    func add(_ socket: Int32, token: UInt64) throws(SocketError) {
        precondition(Int(token) == fds.count, "tokens are the sockets' indices")
        fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0))
    }

    func replace(token: UInt64, with socket: Int32) {
        fds[Int(token)].fd = socket
    }

    /// Waits up to `timeoutMilliseconds` (0 polls); returns how many sockets are readable.
    func wait(timeoutMilliseconds: Int32) -> Int {
        ready.removeAll(keepingCapacity: true)
        let n = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds) }
        guard n > 0 else { return 0 }
        for i in fds.indices where fds[i].revents != 0 { ready.append(i) }
        return ready.count
    }

    @inline(__always) func token(_ i: Int) -> UInt64 { UInt64(ready[i]) }
}

/// CPU time and peak memory of a process, read from /proc.
public struct ProcessSample: Sendable, Equatable {
    /// utime + stime in clock ticks.
    public var cpuTicks: UInt64
    /// VmHWM in kB.
    public var peakRSSKiB: UInt64

    /// Clock ticks per second (sysconf(_SC_CLK_TCK)).
    public static var ticksPerSecond: UInt64 { UInt64(max(1, sysconf(Int32(_SC_CLK_TCK)))) }

    /// Reads /proc/PID/stat and /proc/PID/status; nil if the process is gone.
    public static func read(pid: Int32) -> ProcessSample? {
        guard let stat = readFile("/proc/\(pid)/stat"), let status = readFile("/proc/\(pid)/status") else { return nil }
        // Fields after the command name (which is in parentheses and may hold spaces).
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is state (field 3); utime is field 14, stime field 15.
        guard fields.count > 13, let u = UInt64(fields[11]), let s = UInt64(fields[12]) else { return nil }
        var hwm: UInt64 = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            hwm = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return ProcessSample(cpuTicks: u + s, peakRSSKiB: hwm)
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// This process's CPU time (user + system) in nanoseconds.
func selfCPUNanoseconds() -> UInt64 {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    let user = UInt64(ru.ru_utime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_utime.tv_usec) * 1000
    let system = UInt64(ru.ru_stime.tv_sec) * 1_000_000_000 + UInt64(ru.ru_stime.tv_usec) * 1000
    return user + system
}

/// Raises the open-file limit to its hard maximum (each emulated client holds a socket).
func raiseFileLimit() {
    var rl = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 && rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
}
