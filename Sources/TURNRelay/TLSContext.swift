import COpenSSL
import CTraverseTLS
import Synchronization
import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// An OpenSSL server context for TLS or DTLS.
///
/// `@unchecked Sendable`: an `SSL_CTX` is reference counted and safe to use from several
/// threads for `SSL_new` once configured; it is never mutated after `init`.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer

    /// Loads the certificate chain and key from PEM files.
    public init(certificate: String, privateKey: String, stream: Bool) throws(TLSError) {
        var error = [CChar](repeating: 0, count: 256)
        guard let ctx = traverse_tls_server_context(certificate, privateKey, stream ? 1 : 0, &error, error.count) else {
            throw TLSError.cannotLoad(path: certificate, reason: stringFromC(error))
        }
        context = ctx
    }

    deinit { SSL_CTX_free(context) }

    /// A new session for one connection.
    func makeSession() -> OpaquePointer? {
        guard let ssl = SSL_new(context) else { return nil }
        traverse_tls_set_modes(ssl)
        return ssl
    }
}

/// Why TLS could not be set up.
public enum TLSError: Error, CustomStringConvertible, Sendable {
    case cannotLoad(path: String, reason: String)
    case cannotGenerate(path: String)

    public var description: String {
        switch self {
        case .cannotLoad(let path, let reason): "cannot load TLS certificate or key (\(path)): \(reason)"
        case .cannotGenerate(let path): "cannot create a self-signed certificate at \(path)"
        }
    }
}

/// The TLS and DTLS contexts in force, replaced as a whole when the certificate files change or
/// on SIGHUP: new handshakes get the new certificate, established sessions keep theirs.
public final class TLSContextStore: Sendable {
    public let certificatePath: String
    public let privateKeyPath: String
    private let contexts: Mutex<(tls: TLSContext, dtls: TLSContext)>
    private let stamps = Mutex<(Int, Int)>((0, 0))

    /// Loads both contexts from the files.
    public init(certificate: String, privateKey: String) throws(TLSError) {
        certificatePath = certificate
        privateKeyPath = privateKey
        let tls = try TLSContext(certificate: certificate, privateKey: privateKey, stream: true)
        let dtls = try TLSContext(certificate: certificate, privateKey: privateKey, stream: false)
        contexts = Mutex((tls, dtls))
        stamps.withLock { $0 = (Self.modificationTime(certificate), Self.modificationTime(privateKey)) }
    }

    /// A self-signed certificate and key in `directory`, created on first use.
    public static func selfSigned(in directory: String) throws(TLSError) -> TLSContextStore {
        let cert = directory + "/tls-certificate.pem"
        let key = directory + "/tls-key.pem"
        if access(cert, R_OK) != 0 || access(key, R_OK) != 0 {
            guard traverse_tls_generate_self_signed(cert, key, "traverse.localhost", 365) == 1 else {
                throw .cannotGenerate(path: cert)
            }
        }
        return try TLSContextStore(certificate: cert, privateKey: key)
    }

    var tls: TLSContext { contexts.withLock { $0.tls } }
    var dtls: TLSContext { contexts.withLock { $0.dtls } }

    /// Reloads from the files; on failure the old contexts stay in force.
    public func reload() throws(TLSError) {
        let tls = try TLSContext(certificate: certificatePath, privateKey: privateKeyPath, stream: true)
        let dtls = try TLSContext(certificate: certificatePath, privateKey: privateKeyPath, stream: false)
        contexts.withLock { $0 = (tls, dtls) }
        stamps.withLock { $0 = (Self.modificationTime(certificatePath), Self.modificationTime(privateKeyPath)) }
    }

    /// Whether either file changed since the last load.
    public func filesChanged() -> Bool {
        let now = (Self.modificationTime(certificatePath), Self.modificationTime(privateKeyPath))
        return stamps.withLock { $0 != now }
    }

    /// The SHA-256 fingerprint of the certificate file (hex).
    public var fingerprint: String {
        var out = [CChar](repeating: 0, count: 80)
        return traverse_tls_certificate_fingerprint(certificatePath, &out, out.count) == 1 ? stringFromC(out) : ""
    }

    static func modificationTime(_ path: String) -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec) ^ Int(st.st_ino) ^ Int(st.st_size)
    }
}
