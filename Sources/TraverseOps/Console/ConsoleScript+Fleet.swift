extension ConsoleScript {
    /// `fleet.js`: the board from `/console/fleet.json` every 2 s, a row per node; a node's name
    /// links to its console when the server found it reachable.
    static let fleet = #"""
        'use strict';
        (function () {
          const C = window.TraverseConsole;

          function row(n, consoles, self) {
            const url = consoles[n.node];
            const name = url ? C.el('a', { href: url, text: n.node }) : C.el('span', { text: n.node });
            const bar = C.el('span', { class: 'bar' }, C.el('span'));
            bar.firstChild.style.width = Math.round(Math.min(1, Math.max(0, n.load)) * 100) + '%';
            return C.el('tr', { 'data-node': n.node, 'data-state': n.state },
              C.el('td', {}, name, n.node === self ? ' (this node)' : ''),
              C.el('td', {}, C.el('span', { class: 'badge ' + n.state, text: n.state })),
              C.el('td', {}, bar, C.percent(n.load)),
              C.el('td', { class: 'num', text: n.allocations + ' / ' + n.capacity }),
              C.el('td', { class: 'num', text: C.bits(n.bits_per_second) }),
              C.el('td', { class: 'num', text: C.fixed(n.age_ms / 1000, 1) + ' s' }),
              C.el('td', { text: n.admin || '–' }));
          }

          C.every(2000, async () => {
            const d = await C.api('GET', '/console/fleet.json');
            const b = d.board;
            const body = document.querySelector('#fleet-table tbody');
            body.replaceChildren(...b.nodes.map((n) => row(n, d.consoles, b.self)));
            const summary = b.redis_up === undefined || b.redis_up === null
              ? 'No [fleet] configured: this node alone.'
              : b.nodes.length + ' nodes; this node: ' + b.self + '; Redis ' + (b.redis_up ? 'up' : 'DOWN');
            C.set('fleet-summary', summary);
          });
        })();

        """#
}
