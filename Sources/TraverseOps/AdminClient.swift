import FlyingFox
import FlyingSocks
import Foundation
public import STUNCodec

/// The admin endpoint's client (the CLI's `top`, `fleet`, `ban`, `sessions`, the fleet's
/// cross-node `/sessions`, the console's links, tests), over FlyingFox's `HTTPClient`: one request
/// per connection, `Connection: close`. It names the endpoint by its address in `Host`, and sends
/// `X-Traverse-Admin: 1` with every request but GET and HEAD, as `AdminRequestPolicy` requires.
///
/// FlyingFox's client bounds only the connect (5 s); the whole exchange is bounded here by
/// `timeoutSeconds`, cancelling the request (its socket waits are cancellable).
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

    /// Sends `method path` (with a JSON `body`, if any) to `address` and returns the answer,
    /// within `timeoutSeconds`. `path` may carry a query (`/sessions?fleet=1`), already
    /// percent-encoded.
    public static func fetch(
        _ method: String, _ path: String, to address: TransportAddress, token: String? = nil, body: String? = nil,
        timeoutSeconds: Int = 5
    ) async throws(Failure) -> Response {
        let request = makeRequest(method, path, to: address, token: token, body: body)
        let result: Result<Response, Failure> = await withTaskGroup(of: Result<Response, Failure>?.self) { group in
            group.addTask { await exchange(request, with: address) }
            group.addTask {
                try? await Task.sleep(for: .seconds(timeoutSeconds))
                return Task.isCancelled ? nil : .failure(Failure(description: "no answer from \(address) in time"))
            }
            var first: Result<Response, Failure>? = nil
            while first == nil, let next = await group.next() { first = next }
            group.cancelAll()
            return first ?? .failure(Failure(description: "cancelled"))
        }
        return try result.get()
    }

    /// The request as the endpoint expects it.
    static func makeRequest(
        _ method: String, _ path: String, to address: TransportAddress, token: String?, body: String?
    )
        -> HTTPRequest
    {
        var headers = HTTPHeaders()
        headers[.host] = address.description
        headers[.connection] = "close"
        if body != nil { headers[.contentType] = "application/json" }
        if let token { headers[.authorization] = "Bearer \(token)" }
        // State-changing requests must carry the admin header (`AdminRequestPolicy`).
        if method != "GET" && method != "HEAD" { headers[HTTPHeader(AdminRequestPolicy.requiredHeader)] = "1" }
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let target = HTTPRequest.Target(path: String(parts[0]), query: parts.count > 1 ? String(parts[1]) : "")
        return HTTPRequest(
            method: HTTPMethod(method), version: .http11, target: target, headers: headers,
            body: HTTPBodySequence(data: Data((body ?? "").utf8)))
    }

    static func exchange(_ request: HTTPRequest, with address: TransportAddress) async -> Result<Response, Failure> {
        do {
            var client = HTTPClient()
            let response: HTTPResponse
            switch address.ip {
            case .v4:
                response = try await client.sendHTTPRequest(
                    request, to: try sockaddr_in.inet(ip4: "\(address.ip)", port: address.port))
            case .v6:
                response = try await client.sendHTTPRequest(
                    request, to: try sockaddr_in6.inet6(ip6: "\(address.ip)", port: address.port))
            }
            // Read while the connection is open: a large body streams from the socket.
            let data = try await response.bodyData
            var headers: [String: String] = [:]
            for (name, value) in response.headers { headers[name.rawValue.lowercased()] = value }
            return .success(
                Response(
                    status: response.statusCode.code, headers: headers, body: String(decoding: data, as: UTF8.self)))
        } catch {
            // FlyingSocks reports a refused connection as `disconnected`.
            return .failure(Failure(description: "cannot reach the admin endpoint at \(address): \(error)"))
        }
    }
}
