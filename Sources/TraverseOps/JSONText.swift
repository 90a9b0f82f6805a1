import Foundation

/// Every JSON text Traverse writes (admin answers, the announce file, generated credentials, the
/// CLI's requests, JSON log lines) comes from `JSONEncoder` here: values are always escaped, and
/// keys are sorted so that an answer is the same bytes for the same values.
///
/// Two layouts, both kept from before JSON went through `Codable`: `compact` (`{"a":1,"b":[2,3]}`,
/// the `Codable` answers: `/load`, `/fleet`, `/sessions`, the console) and `spaced`
/// (`{"a": 1, "b": [2, 3]}`, the small answers of `/drain`, `/reload`, `/bans/…`, `/sessions/…`,
/// the announce and credentials files), which is the compact text with a space after each `:`
/// and `,` outside strings.
public enum JSONText {
    /// `value` as compact JSON, keys sorted.
    public static func compact<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Types encoded here have string keys and finite numbers: encoding cannot fail.
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// `value` as JSON with a space after each `:` and `,`, keys sorted.
    public static func spaced<T: Encodable>(_ value: T) -> String {
        var out = ""
        var inString = false
        var escaped = false
        for c in compact(value).unicodeScalars {
            out.unicodeScalars.append(c)
            if inString {
                if escaped {
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else if c == "\"" {
                    inString = false
                }
            } else if c == "\"" {
                inString = true
            } else if c == ":" || c == "," {
                out.unicodeScalars.append(" ")
            }
        }
        return out
    }

    /// `s` as a JSON string literal, quotes included.
    public static func string(_ s: String) -> String { compact(s) }

    /// Decodes `T` from JSON text, or nil.
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
