// Reading small kernel text files (/proc, /sys) and other small files whole, without Foundation.
// /proc files report a size of 0, so they are read until end of file, in chunks.
// Invariant: the descriptor is closed on every path; a file over `limit` bytes reads as nil.

#if canImport(Glibc)
    import Glibc
#endif

/// Whole-file reads of small text files.
public enum TextFile {
    /// The whole file as UTF-8 text, or nil if it cannot be opened or holds more than `limit` bytes.
    public static func read(_ path: String, limit: Int = 16 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > limit { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
