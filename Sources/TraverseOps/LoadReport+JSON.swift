import Foundation

extension LoadReport {
    /// The JSON of `GET /load` (keys sorted).
    public func encoded() -> String { JSONText.compact(self) }

    /// Parses the JSON of `GET /load`.
    public static func decode(_ json: String) -> LoadReport? {
        try? JSONDecoder().decode(LoadReport.self, from: Data(json.utf8))
    }

    /// A top-level string field of a JSON object (the announce file's "admin"), or nil.
    public static func jsonField(_ json: String, _ name: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            return nil
        }
        return object[name] as? String
    }
}
