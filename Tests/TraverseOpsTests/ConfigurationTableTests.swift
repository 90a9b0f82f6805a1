import Foundation
import STUNCodec
import TURNCore
import TURNRelay
import Testing
import TraverseOps

/// The key table (`ConfigurationKeys`): complete, documented, and the one source of the loader's
/// checks and of the defaults.
@Suite("Configuration key table")
struct ConfigurationTableTests {
    static let sections: Set<String> = ["server", "log", "auth", "relay", "limits", "tls", "admin", "fleet"]

    @Test("Every key has a section, a type, a default and a doc; names are unique")
    func everyKeyIsDescribed() {
        #expect(ConfigurationKeys.all.count == ConfigurationKeys.byName.count)
        #expect(ConfigurationKeys.all.count == 60)
        for key in ConfigurationKeys.all {
            let section = String(key.name.split(separator: ".").first ?? "")
            #expect(Self.sections.contains(section), "\(key.name)")
            #expect(!key.type.isEmpty && !key.defaultText.isEmpty && !key.doc.isEmpty, "\(key.name)")
        }
    }

    @Test("A value of the wrong type is refused with one line naming its key, for every key")
    func everyKeyRefusesABadValue() {
        for key in ConfigurationKeys.all {
            let parts = key.name.split(separator: ".", maxSplits: 1)
            // A table where a scalar or an array is expected, and a number where a table is.
            let tableKinds = ["auth.users", "relay.external_addresses"]
            let bad = tableKinds.contains(key.name) ? "1" : "{ x = 1 }"
            do {
                _ = try ConfigurationLoader.parse("[\(parts[0])]\n\(parts[1]) = \(bad)\n")
                Issue.record("\(key.name) = \(bad) was accepted")
            } catch {
                #expect(error.key == key.name, "\(error)")
                #expect(error.description == "invalid configuration: \(key.name): \(error.reason)")
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test(
        "Range and format checks name the key and keep their reasons",
        arguments: [
            ("[server]\nshards = 300", "server.shards", "must be between 0 and 256"),
            ("[log]\nformat = \"xml\"", "log.format", "expected \"logfmt\" or \"json\""),
            ("[auth]\nrest_separator = \"::\"", "auth.rest_separator", "expected exactly one character"),
            ("[relay]\nport_range = \"9-1\"", "relay.port_range", "expected LOW-HIGH with 0 < LOW <= HIGH <= 65535"),
            ("[fleet]\npublish_interval = 0.01", "fleet.publish_interval", "must be between 0.1 and 60.0"),
            ("[admin]\nlisten = \"nowhere\"", "admin.listen", "expected ADDRESS:PORT"),
            ("[auth]\nusers = { alice = \"\" }", "auth.users.alice", "expected a non-empty password string"),
        ])
    func rangeChecks(text: String, key: String, reason: String) {
        do {
            _ = try ConfigurationLoader.parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.key == key)
            #expect(error.reason == reason)
        }
    }

    @Test("Docs/configuration.md lists exactly the table's keys, with its types and defaults")
    func documentationMatchesTheTable() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Docs/configuration.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        var section: String? = nil
        var documented: [String: (type: String, defaultText: String)] = [:]
        var inKeys = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { inKeys = line == "## TOML keys" }
            guard inKeys else { continue }
            if line.hasPrefix("### `[") {
                section = String(line.dropFirst("### `[".count).prefix { $0 != "]" })
                continue
            }
            guard let section, line.hasPrefix("| `") else { continue }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            let name = section + "." + cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            documented[name] = (cells[2], cells[3])
        }
        #expect(Set(documented.keys) == Set(ConfigurationKeys.byName.keys))
        for key in ConfigurationKeys.all {
            guard let doc = documented[key.name] else { continue }
            #expect(doc.type == key.type, "\(key.name): type")
            #expect(doc.defaultText == key.defaultText, "\(key.name): default")
        }
    }

    @Test("The table's defaults are those of the core and the I/O layer used without a file")
    func defaultsAgreeWithTheLibraries() {
        let core = TraverseConfiguration().coreConfiguration()
        let plainCore = CoreConfiguration()
        #expect(core.software == plainCore.software)
        #expect(core.defaultLifetime == plainCore.defaultLifetime)
        #expect(core.maxLifetime == plainCore.maxLifetime)
        #expect(core.nonceLifetime == plainCore.nonceLifetime)
        #expect(core.maxAllocations == plainCore.maxAllocations)
        #expect(core.maxAllocationsPerUser == plainCore.maxAllocationsPerUser)
        #expect(core.maxPermissionsPerAllocation == plainCore.maxPermissionsPerAllocation)
        #expect(core.maxChannelsPerAllocation == plainCore.maxChannelsPerAllocation)
        #expect(core.bandwidthPerAllocation == plainCore.bandwidthPerAllocation)
        #expect(core.unauthenticatedRatePerSecond == plainCore.unauthenticatedRatePerSecond)
        #expect(core.challengeOverflowBytesPerSecond == plainCore.challengeOverflowBytesPerSecond)
        #expect(core.unauthenticatedReasonPhrases == plainCore.unauthenticatedReasonPhrases)
        #expect(core.legacyChannelNumbers == plainCore.legacyChannelNumbers)
        let relay = TraverseConfiguration().relayConfiguration()
        let plainRelay = RelayConfiguration()
        #expect(relay.listen == plainRelay.listen)
        #expect(relay.shards == plainRelay.shards)
        #expect(relay.portRange == plainRelay.portRange)
        #expect(relay.segmentationOffload == plainRelay.segmentationOffload)
        #expect(relay.receiveOffload == plainRelay.receiveOffload)
        #expect(relay.pollLingerMicroseconds == plainRelay.pollLingerMicroseconds)
        #expect(relay.logFullAddresses == plainRelay.logFullAddresses)
        #expect(relay.maxConnections == plainRelay.maxConnections)
        #expect(relay.maxConnectionsPerSource == plainRelay.maxConnectionsPerSource)
        #expect(relay.dtls == plainRelay.dtls)
        #expect(relay.idleTimeoutSeconds == plainRelay.idleTimeoutSeconds)
    }
}

@Suite("JSON and log text")
struct JSONTextTests {
    @Test("Quotes, backslashes, newlines and control characters in a value are escaped")
    func escaping() throws {
        struct Answer: Codable, Equatable {
            var reason: String
        }
        let value = Answer(reason: "a \"quoted\" \\ path\nsecond line\u{1}, key: value")
        for text in [JSONText.compact(value), JSONText.spaced(value)] {
            #expect(!text.contains("\n"))
            #expect(text.contains("\\\"quoted\\\"") && text.contains("\\n") && text.contains("\\u0001"))
            #expect(JSONText.decode(Answer.self, from: text) == value)
        }
        // Separators inside a string are left alone; those between fields get a space.
        #expect(JSONText.spaced(value).hasSuffix(", key: value\"}"))
        #expect(JSONText.spaced(["b": [1, 2], "a": [3]]) == "{\"a\": [3], \"b\": [1, 2]}")
        #expect(JSONText.compact(["cidr": "2001:db8::/48"]) == "{\"cidr\":\"2001:db8::/48\"}")
        #expect(JSONText.string("x\"y") == "\"x\\\"y\"")
    }

    @Test(
        "Log timestamps are RFC 3339, UTC, with milliseconds",
        arguments: [
            (0, 0, "1970-01-01T00:00:00.000Z"), (951_782_400, 7, "2000-02-29T00:00:00.007Z"),
            (1_000_000_000, 42, "2001-09-09T01:46:40.042Z"), (1_796_095_979, 843, "2026-12-01T03:32:59.843Z"),
        ])
    func rfc3339(seconds: Int, milliseconds: Int, expected: String) {
        #expect(StructuredLogHandler.rfc3339(seconds: seconds, milliseconds: milliseconds) == expected)
    }
}
