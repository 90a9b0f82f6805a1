/// The console's HTML pages and style sheet. Markup only: no inline script or style (the
/// Content-Security-Policy forbids both); each page loads `common.js` and its own script, which
/// fill the empty elements below with the data they fetch.
enum ConsolePages {
    /// A page: the shared header, navigation and token form, then `main`.
    static func page(name: String, title: String, scripts: [String], main: String) -> String {
        let tags = (["common.js"] + scripts).map { "<script src=\"/console/assets/\($0)\" defer></script>" }
        func link(_ page: String, _ href: String, _ label: String) -> String {
            "<a href=\"\(href)\"\(page == name ? " aria-current=\"page\"" : "")>\(label)</a>"
        }
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="referrer" content="no-referrer">
            <title>Traverse · \(title)</title>
            <link rel="stylesheet" href="/console/assets/console.css">
            \(tags.joined(separator: "\n"))
            </head>
            <body data-page="\(name)">
            <header>
            <span class="brand">Traverse</span>
            <nav>\(link("live", "/", "Live"))\(link("fleet", "/console/fleet", "Fleet"))\(link("sessions", "/console/sessions", "Sessions &amp; bans"))\(link("check", "/check", "Self-test"))</nav>
            <span id="status" class="status" role="status"></span>
            <button id="forget-token" type="button" hidden>Forget token</button>
            </header>
            <form id="token-form" class="token" hidden>
            <label for="token-input">Admin token</label>
            <input id="token-input" type="password" autocomplete="off" spellcheck="false">
            <button type="submit">Use token</button>
            <p class="hint">This endpoint has an admin token (<code>admin.token</code>). It is kept in this tab only
            (<code>sessionStorage</code>) and sent as <code>Authorization: Bearer</code>.</p>
            </form>
            <main id="main">
            \(main)
            </main>
            </body>
            </html>

            """
    }

    static let live = page(
        name: "live", title: "Live", scripts: ["chart.min.js", "live.js"],
        main: """
            <section id="top" class="numbers" aria-label="Now (as traverse top)">
            <div class="stat"><span class="label">Load score</span><span class="value" id="top-load">–</span><span class="sub" id="top-state"></span></div>
            <div class="stat"><span class="label">CPU</span><span class="value" id="top-cpu">–</span><span class="sub" id="top-rss"></span></div>
            <div class="stat"><span class="label">Allocations</span><span class="value" id="top-allocations">–</span><span class="sub" id="top-families"></span></div>
            <div class="stat"><span class="label">In (client → peer)</span><span class="value" id="top-in">–</span><span class="sub" id="top-in-packets"></span></div>
            <div class="stat"><span class="label">Out (peer → client)</span><span class="value" id="top-out">–</span><span class="sub" id="top-out-packets"></span></div>
            <div class="stat"><span class="label">Requests</span><span class="value" id="top-requests">–</span><span class="sub" id="top-created"></span></div>
            <div class="stat"><span class="label">Auth failures</span><span class="value" id="top-auth">–</span><span class="sub">incl. normal 401 challenges</span></div>
            <div class="stat"><span class="label">Drops</span><span class="value" id="top-drops">–</span><span class="sub" id="top-kernel"></span></div>
            <div class="stat errors"><span class="label">Top error codes (last 1 s)</span><table id="top-errors"><tbody></tbody></table></div>
            </section>
            <p id="no-charts" class="notice" hidden>Charts need Debian's <code>libjs-chart.js</code>
            (<code>/usr/share/javascript/chart.js/chart.min.js</code>); the numbers above stay live without it.</p>
            <section class="charts" aria-label="The last 5 minutes">
            <figure><figcaption>Allocations</figcaption><div class="chart"><canvas id="chart-allocations"></canvas></div></figure>
            <figure><figcaption>Relayed packets/s</figcaption><div class="chart"><canvas id="chart-packets"></canvas></div></figure>
            <figure><figcaption>Relayed bits/s</figcaption><div class="chart"><canvas id="chart-bits"></canvas></div></figure>
            <figure><figcaption>Drops/s by reason</figcaption><div class="chart"><canvas id="chart-drops"></canvas></div></figure>
            <figure><figcaption>Auth failures/s by reason (401 challenges left out)</figcaption><div class="chart"><canvas id="chart-auth"></canvas></div></figure>
            <figure><figcaption>CPU (% of all cores) and load score (%)</figcaption><div class="chart"><canvas id="chart-cpu"></canvas></div></figure>
            </section>
            """)

    static let fleet = page(
        name: "fleet", title: "Fleet", scripts: ["fleet.js"],
        main: """
            <h1>Fleet board</h1>
            <p id="fleet-summary" class="summary"></p>
            <table id="fleet-table" class="grid">
            <thead><tr><th>Node</th><th>State</th><th>Load</th><th>Allocations</th><th>Relayed</th><th>Age</th><th>Admin</th></tr></thead>
            <tbody></tbody>
            </table>
            <p class="hint">A node's name links to its own console when this node can reach its admin endpoint.
            States: ready; draining; full (allocations at capacity); stale (no update for 3 publish intervals).</p>
            """)

    static let sessions = page(
        name: "sessions", title: "Sessions and bans", scripts: ["sessions.js"],
        main: """
            <h1>Sessions</h1>
            <div class="controls">
            <label>Filter by user <input id="filter-user" type="search" autocomplete="off" spellcheck="false"></label>
            <label><input id="all-nodes" type="checkbox"> every node of the fleet</label>
            <span id="sessions-count" class="summary"></span>
            </div>
            <p id="sessions-message" class="message" role="status"></p>
            <table id="sessions-table" class="grid sortable">
            <thead><tr>
            <th data-key="id">Id</th><th data-key="node">Node</th><th data-key="user">User</th><th data-key="transport">Transport</th>
            <th data-key="family">Family</th><th data-key="client">Client</th><th data-key="age_s">Age</th>
            <th data-key="lifetime_left_s">Expires in</th><th data-key="permissions">Perm.</th><th data-key="channels">Chan.</th>
            <th data-key="bytes_from_client">From client</th><th data-key="bytes_to_client">To client</th><th>Actions</th>
            </tr></thead>
            <tbody></tbody>
            </table>
            <h1>Bans</h1>
            <form id="ban-form" class="controls">
            <label>Address or prefix <input id="ban-cidr" required placeholder="203.0.113.7/32" autocomplete="off" spellcheck="false"></label>
            <label>Reason <input id="ban-reason" maxlength="256" autocomplete="off"></label>
            <label>Expires in (s) <input id="ban-expires" type="number" min="1" max="315360000" placeholder="never"></label>
            <button type="submit">Ban</button>
            </form>
            <p id="bans-message" class="message" role="status"></p>
            <table id="bans-table" class="grid">
            <thead><tr><th>Prefix</th><th>Reason</th><th>Expires</th><th>Created</th><th>By node</th><th>Actions</th></tr></thead>
            <tbody></tbody>
            </table>
            <p class="hint">Bans from <code>relay.banned_clients</code> are marked “configuration”: change them in the file.
            A ban ends the prefix's allocations at once (on every node of a fleet within a second).</p>
            """)

    static let check = page(
        name: "check", title: "Self-test", scripts: ["check.js"],
        main: """
            <h1>Self-test</h1>
            <p class="hint">Opens two WebRTC connections in this browser, relayed through this server
            (<code>iceTransportPolicy: "relay"</code>), for each URL below, and echoes data between them.
            Run it after a deploy or a certificate change. <code>turns:</code> needs a certificate this browser trusts,
            for the name in the URL.</p>
            <form id="check-form">
            <label for="check-urls">TURN URLs (one a line)</label>
            <textarea id="check-urls" rows="4" spellcheck="false"></textarea>
            <p id="check-credential-note" class="hint"></p>
            <div class="controls">
            <label>User <input id="check-user" autocomplete="off" spellcheck="false"></label>
            <label>Password <input id="check-password" type="password" autocomplete="off"></label>
            <button id="check-run" type="submit">Run self-test</button>
            </div>
            </form>
            <p id="check-summary" class="summary" role="status"></p>
            <table id="check-results" class="grid">
            <thead><tr><th>URL</th><th>Relay candidate</th><th>Connected in</th><th>RTT (getStats)</th><th>Echo</th><th>Result</th></tr></thead>
            <tbody></tbody>
            </table>
            """)

    static let css = """
        :root { --fg: #1d232b; --muted: #5d6875; --line: #d8dee5; --bg: #f6f8fa; --accent: #1f6feb;
          --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; font-family: system-ui, sans-serif; font-size: 14px; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; color: var(--fg); background: var(--bg); }
        header { display: flex; align-items: center; gap: 1.5rem; padding: .5rem 1rem; background: #24292f; color: #fff; }
        header .brand { font-weight: 700; letter-spacing: .02em; }
        header nav a { color: #c9d1d9; text-decoration: none; margin-right: 1rem; }
        header nav a[aria-current="page"] { color: #fff; border-bottom: 2px solid #58a6ff; }
        header .status { margin-left: auto; font-size: 12px; color: #c9d1d9; }
        header button { font-size: 12px; }
        main { padding: .75rem 1rem 2rem; }
        h1 { font-size: 16px; margin: 1rem 0 .5rem; }
        code { font-size: 12px; }
        .hint, .summary { color: var(--muted); font-size: 12px; }
        .notice { background: #fff8c5; border: 1px solid #d4a72c; padding: .5rem; }
        .message { min-height: 1.2em; margin: .25rem 0; }
        .message.error, .error { color: var(--bad); }
        .token { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; padding: .75rem 1rem;
          background: #fff8c5; border-bottom: 1px solid #d4a72c; }
        .token .hint { flex-basis: 100%; margin: 0; }
        .numbers { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: .5rem; }
        .stat { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; display: flex; flex-direction: column; }
        .stat .label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .03em; }
        .stat .value { font-size: 20px; font-variant-numeric: tabular-nums; }
        .stat .sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
        .stat.errors table { font-size: 12px; font-variant-numeric: tabular-nums; border-collapse: collapse; }
        .stat.errors td { padding: 0 .6rem 0 0; }
        .charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: .5rem; margin-top: .5rem; }
        figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; }
        figcaption { font-size: 12px; color: var(--muted); }
        .chart { position: relative; height: 190px; }
        table.grid { border-collapse: collapse; width: 100%; background: #fff; font-variant-numeric: tabular-nums; }
        table.grid th, table.grid td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left; white-space: nowrap; }
        table.grid th { background: #eef1f4; font-weight: 600; font-size: 12px; }
        table.sortable th[data-key] { cursor: pointer; user-select: none; }
        table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
        table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
        td.num { text-align: right; }
        .badge { display: inline-block; padding: 0 .45rem; border-radius: 9px; font-size: 12px; color: #fff; background: var(--muted); }
        .badge.ready, .badge.pass { background: var(--ok); }
        .badge.draining, .badge.full { background: var(--warn); }
        .badge.stale, .badge.fail { background: var(--bad); }
        .bar { display: inline-block; width: 80px; height: 8px; background: #eaeef2; border-radius: 4px; vertical-align: middle; margin-right: .4rem; }
        .bar span { display: block; height: 100%; border-radius: 4px; background: var(--accent); }
        .controls { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: .5rem 0; }
        button.confirm { background: var(--bad); color: #fff; border: 1px solid var(--bad); }
        textarea { width: 100%; font-family: ui-monospace, monospace; font-size: 12px; }
        @media (max-width: 900px) { .charts { grid-template-columns: 1fr; } }

        """
}
