import Glibc
import STUNCodec
import Testing
import TraverseSystem

@Suite("/proc readers")
struct ProcReaderTests {
    // A command name with spaces and a parenthesis; utime 250, stime 50 ticks.
    let statLine = "1234 (tra verse) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 200"
    let status = "Name:\ttraverse\nVmPeak:\t  300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t4\n"

    @Test func cpuTimeFromAStatLine() {
        #expect(ProcessStats.cpuTicks(statLine: statLine) == 300)
        #expect(ProcessStats.cpuSeconds(statLine: statLine, ticksPerSecond: 100) == 3.0)
        #expect(ProcessStats.cpuTicks(statLine: "garbage") == nil)
        #expect(ProcessStats.cpuTicks(statLine: "1 (x) S 1 2") == nil)
        #expect(ProcessStats.cpuSeconds(statLine: statLine, ticksPerSecond: 0) == nil)
    }

    @Test func memoryFromAStatusText() {
        let rss: Int64? = ProcessStats.residentBytes(status: status)
        #expect(rss == Int64(10_485_760))
        #expect(ProcessStats.statusKiB("VmHWM", in: status) == 20480)
        #expect(ProcessStats.statusKiB("VmSwap", in: status) == nil)
        #expect(ProcessStats.residentBytes(status: "Name: x\n") == nil)
    }

    @Test func sampleOfAnotherProcess() {
        #expect(ProcessSample.parse(stat: statLine, status: status) == ProcessSample(cpuTicks: 300, peakRSSKiB: 20480))
        #expect(ProcessSample.parse(stat: statLine, status: "") == ProcessSample(cpuTicks: 300, peakRSSKiB: 0))
        #expect(ProcessSample.parse(stat: "", status: status) == nil)
        let me = ProcessSample.read(pid: getpid())
        #expect((me?.peakRSSKiB ?? 0) > 0)
        #expect(ProcessSample.read(pid: -1) == nil)
    }

    @Test func thisProcess() {
        #expect((ProcessStats.cpuSeconds() ?? -1) >= 0)
        #expect((ProcessStats.residentBytes() ?? 0) > 0)
        #expect(ProcessStats.cpuNanoseconds() > 0)
        #expect(ProcessStats.cores >= 1)
    }

    @Test func wholeFiles() {
        #expect(TextFile.read("/proc/self/status")?.contains("VmRSS:") == true)
        #expect(TextFile.read("/nonexistent/file") == nil)
        #expect(TextFile.read("/proc/self/status", limit: 10) == nil)
    }

    @Test func socketTableAddresses() throws {
        let v4 = TransportAddress(ip: .loopbackIPv4, port: 3478)
        let v6 = TransportAddress(ip: try #require(IPAddress("2001:db8::1")), port: 80)
        // Little-endian words of the network-order bytes (x86, arm64).
        #expect(SocketTable.tableAddress(v4) == "0100007F:0D96")
        #expect(SocketTable.tableAddress(v6) == "B80D0120000000000000000001000000:0050")
        #expect(SocketTable.path("udp", .ipv6) == "/proc/net/udp6")
    }

    @Test func socketTableRows() {
        let table = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:0D96 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
               1: 0100007F:0D96 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0
               2: 0100007F:0D97 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0
               3: broken line
            """
        let local = TransportAddress(ip: .loopbackIPv4, port: 3478)
        #expect(SocketTable.inodes(in: table, local: local, state: SocketTable.tcpListen) == [4242])
        #expect(SocketTable.inodes(in: table, local: local, state: "01") == [4343])
        #expect(SocketTable.inodes(in: table, local: local, state: SocketTable.udpUnconnected).isEmpty)
    }

    @Test func ourOwnListenerIsInTheLiveTable() throws {
        let fd = try Sockets.listeningStream(TransportAddress(ip: .loopbackIPv4, port: 0), backlog: 4)
        defer { close(fd) }
        let local = try #require(Sockets.localAddress(fd))
        var st = stat()
        #expect(fstat(fd, &st) == 0)
        let table = try #require(TextFile.read(SocketTable.path("tcp", .ipv4)))
        #expect(SocketTable.inodes(in: table, local: local, state: SocketTable.tcpListen).contains(UInt64(st.st_ino)))
    }
}
