import Dispatch
public import STUNCodec

#if canImport(Glibc)
    import Glibc
#endif

/// A tiny blocking HTTP/1.1 client for the admin endpoint (used by `traverse top` and tests):
/// one request per connection, `Connection: close`, body framed by Content-Length or EOF. It
/// names the endpoint by its address in `Host`, and sends `X-Traverse-Admin: 1` with every
/// request but GET and HEAD, as `AdminRequestPolicy` requires.
public enum AdminClient {
    /// An HTTP answer.
    public struct Response: Sendable {
        /// The HTTP status code.
        public var status: Int
        /// Header fields, names lowercased.
        public var headers: [String: String]
        /// The body as UTF-8 text.
        public var body: String
    }

    /// Why a request failed.
    public struct Failure: Error, CustomStringConvertible {
        /// A one-line reason.
        public let description: String

        /// A failure for `description`.
        public init(description: String) { self.description = description }
    }

    /// `request` on a Dispatch thread, for async callers: the blocking socket calls then never
    /// occupy a thread of Swift's cooperative pool (which may be serving the endpoint itself).
    public static func fetch(
        _ method: String, _ path: String, to address: TransportAddress, token: String? = nil, body: String? = nil,
        timeoutSeconds: Int = 5
    ) async throws(Failure) -> Response {
        let result: Result<Response, Failure> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    returning: Result { () throws(Failure) in
                        try request(
                            method, path, to: address, token: token, body: body, timeoutSeconds: timeoutSeconds)
                    })
            }
        }
        return try result.get()
    }

    /// Sends `method path` (with a JSON `body`, if any) to `address` and returns the answer
    /// (blocking).
    public static func request(
        _ method: String, _ path: String, to address: TransportAddress, token: String? = nil, body: String? = nil,
        timeoutSeconds: Int = 5
    ) throws(Failure) -> Response {
        let fd = socket(address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, address) else { throw Failure(description: "cannot connect to \(address): errno \(errno)") }

        let payload = Array((body ?? "").utf8)
        var head =
            "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nContent-Length: \(payload.count)\r\n"
        if body != nil { head += "Content-Type: application/json\r\n" }
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        // State-changing requests must carry the admin header (`AdminRequestPolicy`).
        if method != "GET" && method != "HEAD" { head += "\(AdminRequestPolicy.requiredHeader): 1\r\n" }
        head += "\r\n"
        let out = Array(head.utf8) + payload
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send failed: errno \(errno)") }
            sent += n
        }

        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int? = nil
        var contentLength: Int? = nil
        var headers: [String: String] = [:]
        var status = 0
        while true {
            if let end = headerEnd, let length = contentLength, data.count - end >= length { break }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw Failure(description: "receive failed: errno \(errno)") }
            if n == 0 { break }
            data += buffer[0..<n]
            if data.count > 64 << 20 { throw Failure(description: "answer too large") }
            if headerEnd == nil, let i = find(data, Array("\r\n\r\n".utf8)) {
                headerEnd = i + 4
                let lines = String(decoding: data[0..<i], as: UTF8.self).split(separator: "\r\n")
                let first = lines.first?.split(separator: " ") ?? []
                guard first.count >= 2, let code = Int(first[1]) else {
                    throw Failure(description: "not an HTTP answer")
                }
                status = code
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    let value = line[line.index(after: colon)...].drop { $0 == " " }
                    headers[line[..<colon].lowercased()] = String(value)
                }
                contentLength = headers["content-length"].flatMap { Int($0) }
            }
        }
        guard let end = headerEnd else { throw Failure(description: "incomplete HTTP answer") }
        let bodyBytes = data[end...].prefix(contentLength ?? Int.max)
        return Response(status: status, headers: headers, body: String(decoding: bodyBytes, as: UTF8.self))
    }

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i..<i + needle.count].elementsEqual(needle) {
            return i
        }
        return nil
    }

    static func connect(_ fd: Int32, _ address: TransportAddress) -> Bool {
        var storage = sockaddr_storage()
        var length: socklen_t = 0
        switch address.ip {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            sin.sin_addr.s_addr = a.bigEndian
            withUnsafeBytes(of: sin) { src in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6(let hi, let lo):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { b in
                b.storeBytes(of: hi.bigEndian, toByteOffset: 0, as: UInt64.self)
                b.storeBytes(of: lo.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            withUnsafeBytes(of: sin6) { src in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        let r = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        return r == 0
    }
}
