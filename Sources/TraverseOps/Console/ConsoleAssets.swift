import Foundation
import Synchronization

/// The console's pages, scripts and style sheet, compiled into the binary (Swift string
/// literals, in `ConsolePages.swift` and the `ConsoleScript+*.swift` files), so that the one
/// `traverse` file carries its console: no resource bundle to install beside it, no build step
/// for the JavaScript, nothing fetched from the internet. Chart.js is the exception: it is read
/// from Debian's `libjs-chart.js` package at run time (`chartPath`).
///
/// Every asset is the same in every build and holds no data: the pages are served without the
/// admin token, and their scripts fetch the data with it.
enum ConsoleAssets {
    /// A static file.
    struct Asset: Sendable {
        var contentType: String
        var body: String
    }

    /// Pages by path.
    static let pages: [String: Asset] = [
        "/": html(ConsolePages.live),
        "/console/fleet": html(ConsolePages.fleet),
        "/console/sessions": html(ConsolePages.sessions),
        "/check": html(ConsolePages.check),
    ]

    /// Files under `/console/assets/`, by name (besides `chart.min.js`).
    static let files: [String: Asset] = [
        "console.css": Asset(contentType: "text/css; charset=utf-8", body: ConsolePages.css),
        "common.js": script(ConsoleScript.common),
        "live.js": script(ConsoleScript.live),
        "fleet.js": script(ConsoleScript.fleet),
        "sessions.js": script(ConsoleScript.sessions),
        "check.js": script(ConsoleScript.check),
    ]

    static func html(_ body: String) -> Asset { Asset(contentType: "text/html; charset=utf-8", body: body) }
    static func script(_ body: String) -> Asset { Asset(contentType: "text/javascript; charset=utf-8", body: body) }

    /// Where Debian's `libjs-chart.js` (Chart.js 3.9, MIT licence) installs its minified UMD build.
    static let chartPath = "/usr/share/javascript/chart.js/chart.min.js"

    private static let chartCache = Mutex<Data?>(nil)

    /// Chart.js, read once from `path` and then kept; nil while the package is not installed
    /// (absence is not remembered: installing the package later needs no restart).
    static func chartJS(path: String = chartPath) -> Data? {
        if path == chartPath, let cached = chartCache.withLock({ $0 }) { return cached }
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return nil }
        if path == chartPath { chartCache.withLock { $0 = data } }
        return data
    }
}
