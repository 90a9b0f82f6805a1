import TraverseSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Small file helpers without Foundation.
public enum FileText {
    /// The whole file as UTF-8 text, or nil if it cannot be read.
    public static func read(_ path: String) -> String? { TextFile.read(path) }

    /// Writes `text` to `path` atomically (temporary file, then rename), with `mode` permissions.
    @discardableResult
    public static func writeAtomically(_ text: String, to path: String, mode: UInt32 = 0o644) -> Bool {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { return false }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count else { return false }
        return rename(temporary, path) == 0
    }

    /// Creates a directory (and parents) if missing.
    public static func makeDirectory(_ path: String, mode: UInt32 = 0o700) -> Bool {
        var current = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            current += (current.isEmpty || current.hasSuffix("/") ? "" : "/") + part
            if mkdir(current, mode) != 0 && errno != EEXIST { return false }
        }
        return true
    }
}
