// The one error type of a failed system call on a socket, for the server and the load generator.
// Invariant: `code` is the errno of the failed call, captured before anything else could change it.

#if canImport(Glibc)
    import Glibc
#endif

/// A socket call that failed, with the call's name and errno's text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    /// The call that failed, with what it was called on (`bind 127.0.0.1:3478`).
    public let operation: String
    /// errno after the call.
    public let code: Int32

    /// Captures errno now.
    public init(_ operation: String) {
        self.operation = operation
        self.code = errno
    }

    /// An error for `operation` with an errno read earlier.
    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// `<operation> failed: <strerror(code)>`.
    public var description: String { "\(operation) failed: \(String(cString: strerror(code)))" }
}
