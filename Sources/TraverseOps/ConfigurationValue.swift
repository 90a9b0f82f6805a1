import STUNCodec
import TOMLKit
import TURNCore

/// How one kind of TOML value is checked, converted and shown: the validation half of a
/// `ConfigurationKey`. Every refusal is a `ConfigurationError` naming the key, with the reasons
/// `traverse check-config` has always printed ("expected an integer", "must be between 1 and
/// 4096", …). `show` writes a value as Docs/configuration.md shows defaults (`` `600` ``).
struct ValueKind<Value: Sendable>: Sendable {
    let parse: @Sendable (_ key: String, TOMLValue) throws(ConfigurationError) -> Value
    let show: @Sendable (Value) -> String

    /// The same TOML value, converted (an integer range stored as `UInt32`, …).
    func map<T: Sendable>(_ forward: @escaping @Sendable (Value) -> T, back: @escaping @Sendable (T) -> Value)
        -> ValueKind<T>
    {
        let parse = self.parse
        let show = self.show
        return ValueKind<T>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> T in forward(try parse(key, v)) },
            show: { show(back($0)) })
    }

    /// This kind, then a check of the value (`reason` when `accept` says no).
    func checked(_ reason: @escaping @Sendable (Value) -> String?) -> ValueKind<Value> {
        let parse = self.parse
        return ValueKind(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> Value in
                let value = try parse(key, v)
                if let why = reason(value) { throw ConfigurationError(key: key, reason: why) }
                return value
            }, show: show)
    }
}

/// The value kinds of the TOML file.
enum Kinds {
    static func quoted(_ s: String) -> String { "`\"\(s)\"`" }
    static func list(_ items: [String]) -> String { "`[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]`" }

    /// A string where `""` means none (unless `emptyIsNone` is false); nil is shown `none`.
    static func optional(_ kind: ValueKind<String>, emptyIsNone: Bool = true) -> ValueKind<String?> {
        ValueKind<String?>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> String? in
                let s = try kind.parse(key, v)
                return emptyIsNone && s.isEmpty ? nil : s
            }, show: { $0.map(kind.show) ?? "none" })
    }

    static let string = ValueKind<String>(
        parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> String in
            guard let s = v.string else { throw ConfigurationError(key: key, reason: "expected a string") }
            return s
        }, show: quoted)

    static let bool = ValueKind<Bool>(
        parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> Bool in
            guard let b = v.bool else { throw ConfigurationError(key: key, reason: "expected true or false") }
            return b
        }, show: { "`\($0)`" })

    static func int(_ range: ClosedRange<Int>) -> ValueKind<Int> {
        ValueKind<Int>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> Int in
                guard let n = v.int else { throw ConfigurationError(key: key, reason: "expected an integer") }
                guard range.contains(n) else {
                    throw ConfigurationError(
                        key: key, reason: "must be between \(range.lowerBound) and \(range.upperBound)")
                }
                return n
            }, show: { "`\($0)`" })
    }

    static func number(_ range: ClosedRange<Double>) -> ValueKind<Double> {
        ValueKind<Double>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> Double in
                guard let x = v.double ?? v.int.map(Double.init) else {
                    throw ConfigurationError(key: key, reason: "expected a number")
                }
                guard range.contains(x) else {
                    throw ConfigurationError(
                        key: key, reason: "must be between \(range.lowerBound) and \(range.upperBound)")
                }
                return x
            }, show: { $0 == $0.rounded() ? "`\(Int($0))`" : "`\($0)`" })
    }

    /// One of `choices` (a string).
    static func choice(_ choices: [String], reason: String) -> ValueKind<String> {
        string.checked { choices.contains($0) ? nil : reason }
    }

    static let strings = ValueKind<[String]>(
        parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> [String] in
            guard let a = v.array else { throw ConfigurationError(key: key, reason: "expected an array of strings") }
            var out: [String] = []
            for e in a {
                guard let s = e.tomlValue.string else {
                    throw ConfigurationError(key: key, reason: "expected an array of strings")
                }
                out.append(s)
            }
            return out
        }, show: list)

    /// An array of strings, each converted by `convert` (nil: refused with `reason(text)`).
    static func each<T: Sendable & CustomStringConvertible>(
        _ convert: @escaping @Sendable (String) -> T?, reason: @escaping @Sendable (String) -> String
    ) -> ValueKind<[T]> {
        ValueKind<[T]>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> [T] in
                var out: [T] = []
                for s in try strings.parse(key, v) {
                    guard let a = convert(s) else { throw ConfigurationError(key: key, reason: reason(s)) }
                    out.append(a)
                }
                return out
            }, show: { list($0.map(\.description)) })
    }

    static let addresses = each(TransportAddress.init) { "\"\($0)\" is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)" }
    static let ips = each(IPAddress.init) { "\"\($0)\" is not an IP address" }
    static let cidrs = each(CIDR.init) { "\"\($0)\" is not an address or CIDR" }

    /// `LOW-HIGH`.
    static let portRange = ValueKind<ClosedRange<UInt16>>(
        parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> ClosedRange<UInt16> in
            try ConfigurationLoader.portRange(key, try string.parse(key, v))
        }, show: { quoted("\($0.lowerBound)-\($0.upperBound)") })

    /// A table of strings (`name = "value"`), each checked by `convert`: a refused entry is named
    /// `key.NAME` with `entryReason`.
    static func table<K: Hashable & Sendable, V: Sendable>(
        reason: String, entryReason: String, _ convert: @escaping @Sendable (String, String?) -> (K, V)?
    ) -> ValueKind<[K: V]> {
        ValueKind<[K: V]>(
            parse: { (key: String, v: TOMLValue) throws(ConfigurationError) -> [K: V] in
                guard let t = v.table else { throw ConfigurationError(key: key, reason: reason) }
                var out: [K: V] = [:]
                for (name, value) in t {
                    guard let (k, x) = convert(name, value.tomlValue.string) else {
                        throw ConfigurationError(key: "\(key).\(name)", reason: entryReason)
                    }
                    out[k] = x
                }
                return out
            }, show: { $0.isEmpty ? "`{}`" : "`{…}`" })
    }
}
