import FlyingFox
import Foundation

/// The small JSON answers of the admin endpoint (`POST /drain`, `POST /reload`, errors, ended
/// sessions, removed bans), as `Encodable` values written by `JSONText.spaced`: their field names
/// and layout are those operators' scripts and `traverse` subcommands already read.
extension AdminServer {
    /// `POST /drain`.
    struct DrainAnswer: Encodable {
        var draining: Bool
        /// False when the server was already draining.
        var started: Bool
        var allocations: Int
    }

    /// `POST /reload`.
    struct ReloadAnswer: Encodable {
        var reloaded: Bool
        /// Why a reload was refused (the one-line configuration error).
        var reason: String?
    }

    /// A refused request: `{"error": "…"}`.
    struct ErrorAnswer: Encodable {
        var error: String
    }

    /// `DELETE /bans/…`.
    struct RemovedAnswer: Encodable {
        var removed: String
    }

    /// `DELETE /sessions…`: sessions ended here, and whether the request went to the fleet.
    struct EndedAnswer: Encodable {
        var ended: Int
        var published: Bool?
    }

    /// `value` as a JSON answer (`JSONText.spaced`, one line).
    static func answer<T: Encodable>(_ status: HTTPStatusCode, _ value: T) -> HTTPResponse {
        json(status, JSONText.spaced(value) + "\n")
    }

    /// `{"error": message}` with `status`.
    static func refusal(_ status: HTTPStatusCode, _ message: String) -> HTTPResponse {
        answer(status, ErrorAnswer(error: message))
    }
}
