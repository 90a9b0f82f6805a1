import ArgumentParser
import Foundation
import STUNCodec
import TraverseOps

/// Where a running server's admin endpoint is, and its token: shared by the admin subcommands.
struct AdminTarget: ParsableArguments {
    @Option(name: .long, help: "Admin address ADDRESS:PORT (default 127.0.0.1:9641).")
    var admin: String?
    @Option(name: .long, help: "Read the admin address from a server's announce file instead.")
    var announceFile: String?
    @Option(name: .long, help: "Bearer token (or TRAVERSE_ADMIN_TOKEN).")
    var token: String?

    /// The admin address (from `--admin` or the announce file) and the token (flag or
    /// `TRAVERSE_ADMIN_TOKEN`); a one-line error (exit 2) when the address is unusable.
    func resolve(_ command: String) -> (address: TransportAddress, token: String?) {
        let token = self.token ?? environment()["TRAVERSE_ADMIN_TOKEN"]
        if let announceFile {
            guard let text = FileText.read(announceFile), let value = LoadReport.jsonField(text, "admin"),
                let a = TransportAddress(value)
            else { failConfiguration("\(command): no admin address in \(announceFile)") }
            return (a, token)
        }
        guard let a = TransportAddress(admin ?? "127.0.0.1:9641") else {
            failConfiguration("\(command): --admin: expected ADDRESS:PORT")
        }
        return (a, token)
    }

    func call(_ command: String, _ method: String, _ path: String, body: String? = nil) async -> AdminClient.Response {
        let (address, token) = resolve(command)
        do {
            return try await AdminClient.fetch(method, path, to: address, token: token, body: body)
        } catch {
            failConfiguration("\(command): \(error.description)")
        }
    }

    /// A state-changing call whose JSON answer is printed as it came (exit 1 on a non-2xx status).
    func act(_ command: String, _ method: String, _ path: String, body: String? = nil) async {
        let r = await call(command, method, path, body: body)
        _ = json(command, r)
        print(r.body, terminator: "")
    }

    /// The answer's JSON body, or a one-line error (exit 1) for a non-2xx status.
    func json(_ command: String, _ r: AdminClient.Response) -> [String: Any] {
        guard (200..<300).contains(r.status) else {
            FileHandle.standardError.write(Data("traverse \(command): \(r.status) \(r.body)".utf8))
            Foundation.exit(1)
        }
        return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] ?? [:]
    }
}

struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet", abstract: "Show the fleet's load board as a node sees it (GET /fleet).")
    @OptionGroup var target: AdminTarget
    @Flag(name: .long, help: "Print the JSON instead of a table.")
    var json = false

    func run() async throws {
        let r = await target.call("fleet", "GET", "/fleet")
        if json {
            print(r.body, terminator: "")
            return
        }
        let o = target.json("fleet", r)
        let nodes = o["nodes"] as? [[String: Any]] ?? []
        let up = (o["redis_up"] as? Bool).map { $0 ? "up" : "DOWN" } ?? "no fleet"
        print("redis: \(up)   self: \(o["self"] as? String ?? "-")")
        print(pad("NODE", 20) + pad("STATE", 10) + pad("LOAD", 7) + pad("ALLOCS", 10) + pad("BITS/S", 12) + "AGE")
        for n in nodes {
            let load = String(format: "%.2f", n["load"] as? Double ?? 0)
            let bits = String(format: "%.0f", n["bits_per_second"] as? Double ?? 0)
            let age = String(format: "%.1fs", Double(n["age_ms"] as? Int ?? 0) / 1000)
            let allocs = "\(n["allocations"] as? Int ?? 0)/\(n["capacity"] as? Int ?? 0)"
            print(
                pad(n["node"] as? String ?? "?", 20) + pad(n["state"] as? String ?? "?", 10) + pad(load, 7)
                    + pad(allocs, 10) + pad(bits, 12) + age)
        }
    }
}

struct BanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ban", abstract: "Ban a client address or prefix, fleet-wide with [fleet] (POST /bans).")
    @OptionGroup var target: AdminTarget
    @Argument(help: "Address or prefix, e.g. 203.0.113.7 or 2001:db8::/48.")
    var cidr: String
    @Option(name: .long, help: "Why (kept with the ban, never sent to the client).")
    var reason: String?
    @Option(name: .long, help: "Seconds until the ban lapses (default: until removed).")
    var expiresIn: Int?

    func run() async throws {
        let request = BanRequest(cidr: cidr, reason: reason, expiresIn: expiresIn)
        await target.act("ban", "POST", "/bans", body: JSONText.compact(request))
    }
}

struct UnbanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unban", abstract: "Remove a ban made at run time (DELETE /bans/CIDR).")
    @OptionGroup var target: AdminTarget
    @Argument(help: "The address or prefix as banned.")
    var cidr: String

    func run() async throws {
        await target.act("unban", "DELETE", "/bans/\(cidr)")
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions", abstract: "List allocations (GET /sessions), or end them.")
    @OptionGroup var target: AdminTarget
    @Flag(name: .long, help: "Every node of the fleet, not only this one.")
    var fleet = false
    @Option(name: .long, help: "End the session with this id.")
    var end: String?
    @Option(name: .long, help: "End every session of this user, fleet-wide.")
    var endUser: String?
    @Flag(name: .long, help: "Print the JSON instead of a table.")
    var json = false

    func run() async throws {
        if let end { return await target.act("sessions", "DELETE", "/sessions/\(end)") }
        if let endUser {
            let user = endUser.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? endUser
            return await target.act("sessions", "DELETE", "/sessions?user=\(user)")
        }
        let r = await target.call("sessions", "GET", fleet ? "/sessions?fleet=1" : "/sessions")
        if json {
            print(r.body, terminator: "")
            return
        }
        let sessions = target.json("sessions", r)["sessions"] as? [[String: Any]] ?? []
        print(
            pad("ID", 18) + pad("NODE", 12) + pad("USER", 22) + pad("TRANSPORT", 10) + pad("AGE", 8) + pad("LEFT", 8)
                + "BYTES IN/OUT")
        for s in sessions {
            let age = String(format: "%.0fs", s["age_s"] as? Double ?? 0)
            let left = String(format: "%.0fs", s["lifetime_left_s"] as? Double ?? 0)
            print(
                pad(s["id"] as? String ?? "?", 18) + pad(s["node"] as? String ?? "-", 12)
                    + pad(s["user"] as? String ?? "?", 22) + pad(s["transport"] as? String ?? "?", 10) + pad(age, 8)
                    + pad(left, 8) + "\(s["bytes_from_client"] as? Int ?? 0)/\(s["bytes_to_client"] as? Int ?? 0)")
        }
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
