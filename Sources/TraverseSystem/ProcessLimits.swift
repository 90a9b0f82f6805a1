// Resource limits of this process. Invariant: only ever raises a soft limit up to its hard limit;
// never fails loudly (a limit left as it was is the caller's to notice).

#if canImport(Glibc)
    import Glibc
#endif

/// Resource limits of this process.
package enum ProcessLimits {
    /// Raises the open-file limit to its hard maximum (each emulated client holds a socket).
    package static func raiseFileLimit() {
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        }
    }
}
