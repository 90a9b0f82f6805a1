import FlyingFox
import Foundation

/// The operator console's routes on the admin endpoint (same listener, same checks):
///
/// | route | token | what |
/// |---|---|---|
/// | `GET /`, `/console/fleet`, `/console/sessions`, `/check` | no | the pages (static; no data) |
/// | `GET /console/assets/NAME` | no | their scripts and style sheet; `chart.min.js` from `libjs-chart.js` |
/// | `GET /console/live.json[?since=MS]` | yes | the last 5 minutes, one point a second, and `traverse top`'s numbers |
/// | `GET /console/fleet.json` | yes | the board with a console link per reachable node |
/// | `GET /console/check.json` | yes | the self-test's TURN URLs and whether a REST secret is set |
/// | `POST /console/credential` | yes | a REST credential valid for 5 minutes (needs `auth.secrets`) |
///
/// Pages and assets pass the `Host` check (`AdminRequestPolicy`) but not the token: they are
/// the same bytes in every build, and a browser cannot attach a bearer token to a navigation.
/// Everything that carries data or acts needs the token, which the page's script asks for once
/// and keeps in `sessionStorage`; the pages then use the existing JSON routes (`/fleet`,
/// `/sessions`, `/bans`) with it. Every console answer carries `securityHeaders`: no inline
/// script runs, no other site frames the pages.
extension AdminServer {
    /// Content-Security-Policy of the console: scripts, styles and requests from the endpoint
    /// itself only, no inline script or style, never framed.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static func consoleRoutes(
        _ http: HTTPServer, operations ops: Operations, token: String?, guarded: Guard, page: Guard
    ) async {
        for (path, asset) in ConsoleAssets.pages {
            await http.appendRoute(HTTPRoute(stringLiteral: "GET \(path)"), handler: page { _ in consoleFile(asset) })
        }
        await http.appendRoute(
            "GET /console/assets/*",
            handler: page { request in
                let name = String(request.path.dropFirst("/console/assets/".count))
                if name == "chart.min.js" {
                    guard let data = ConsoleAssets.chartJS() else {
                        return secured(
                            text(.notFound, "Chart.js is not installed (apt-get install libjs-chart.js)\n"))
                    }
                    return secured(
                        HTTPResponse(
                            statusCode: .ok, headers: [.contentType: "text/javascript; charset=utf-8"], body: data))
                }
                guard let asset = ConsoleAssets.files[name] else { return secured(text(.notFound, "not found\n")) }
                return consoleFile(asset)
            })
        await http.appendRoute(
            "GET /console/live.json",
            handler: guarded { request in
                var since: Int64?
                if let text = request.query["since"] {
                    guard let value = Int64(text), value >= 0 else {
                        return secured(refusal(.badRequest, "since: Unix milliseconds"))
                    }
                    since = value
                }
                return secured(encoded(.ok, await ConsoleLiveView.make(ops, since: since)))
            })
        let links = ConsoleFleetLinks()
        await http.appendRoute(
            "GET /console/fleet.json",
            handler: guarded { _ in
                let board = await FleetView.make(ops)
                let consoles = await links.consoles(board, token: token)
                return secured(encoded(.ok, ConsoleFleetView(board: board, consoles: consoles)))
            })
        await http.appendRoute(
            "GET /console/check.json",
            handler: guarded { request in
                secured(encoded(.ok, ConsoleSelfTest.configuration(ops, hostHeader: request.headers[.host])))
            })
        await http.appendRoute(
            "POST /console/credential",
            handler: guarded { _ in
                guard let credential = ConsoleSelfTest.mint(ops) else {
                    return secured(
                        refusal(.conflict, "no REST secret is configured (auth.secrets): give a user and password"))
                }
                return secured(encoded(.ok, credential))
            })
    }

    static func consoleFile(_ asset: ConsoleAssets.Asset) -> HTTPResponse {
        secured(HTTPResponse(statusCode: .ok, headers: [.contentType: asset.contentType], body: Data(asset.body.utf8)))
    }

    /// `response` with the console's security headers: CSP, no framing, no type sniffing, no
    /// referrer, no caching (the answers are live data or follow the binary's version).
    static func secured(_ response: HTTPResponse) -> HTTPResponse {
        var r = response
        r.headers[HTTPHeader("Content-Security-Policy")] = contentSecurityPolicy
        r.headers[HTTPHeader("X-Frame-Options")] = "DENY"
        r.headers[HTTPHeader("X-Content-Type-Options")] = "nosniff"
        r.headers[HTTPHeader("Referrer-Policy")] = "no-referrer"
        r.headers[HTTPHeader("Cache-Control")] = "no-store"
        return r
    }
}

/// `GET /console/fleet.json`: the board (as `GET /fleet`) and, by node, the URL of its console
/// where it answers.
struct ConsoleFleetView: Encodable {
    var board: FleetView
    var consoles: [String: String]
}
