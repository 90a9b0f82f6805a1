extension ConsoleScript {
    /// `sessions.js`: the sessions API (`GET /sessions[?fleet=1]`) as a sortable table filtered by
    /// user, refreshed every 3 s; ending one session (`DELETE /sessions/ID`) or all of a user's
    /// (`DELETE /sessions?user=`); the bans (`GET`/`POST /bans`, `DELETE /bans/PREFIX`).
    static let sessions = #"""
        'use strict';
        (function () {
          const C = window.TraverseConsole;
          let sessions = [];
          let sortKey = 'age_s';
          let sortUp = false;
          let selfNode = null;

          function message(id, text, isError) {
            const e = document.getElementById(id);
            e.textContent = text;
            e.classList.toggle('error', !!isError);
          }

          async function endSession(s) {
            try {
              const r = await C.api('DELETE', '/sessions/' + encodeURIComponent(s.id));
              message('sessions-message', r && r.ended ? 'Session ' + s.id + ' ended.'
                : 'Session ' + s.id + ' not here: announced to the fleet.', false);
            } catch (e) {
              message('sessions-message', 'Could not end ' + s.id + ': ' + e.message, true);
            }
            await refresh();
          }

          async function endUser(user) {
            try {
              const r = await C.api('DELETE', '/sessions?user=' + encodeURIComponent(user));
              message('sessions-message', 'Ended ' + r.ended + ' session(s) of ' + user + ' here'
                + (r.published ? ', and on every node of the fleet.' : '.'), false);
            } catch (e) {
              message('sessions-message', 'Could not end the sessions of ' + user + ': ' + e.message, true);
            }
            await refresh();
          }

          function render() {
            const filter = document.getElementById('filter-user').value.trim().toLowerCase();
            const shown = sessions.filter((s) => !filter || String(s.user).toLowerCase().includes(filter));
            shown.sort((a, b) => {
              const x = a[sortKey], y = b[sortKey];
              const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
              return sortUp ? c : -c;
            });
            for (const th of document.querySelectorAll('#sessions-table th[data-key]')) {
              if (th.dataset.key === sortKey) th.setAttribute('aria-sort', sortUp ? 'ascending' : 'descending');
              else th.removeAttribute('aria-sort');
            }
            const rows = shown.map((s) => {
              // Other nodes' usernames arrive as fleet hashes: ending by user works on real names only.
              const local = !s.node || s.node === selfNode;
              const actions = C.el('td', {}, C.confirmButton('End', 'End ' + s.id + '?', () => endSession(s)));
              if (local) actions.append(' ', C.confirmButton('End all of user', 'End every session of ' + s.user + '?', () => endUser(s.user)));
              return C.el('tr', { 'data-id': s.id, 'data-user': s.user },
                C.el('td', { text: s.id }), C.el('td', { text: s.node || '–' }), C.el('td', { text: s.user }),
                C.el('td', { text: s.transport }), C.el('td', { text: s.family }), C.el('td', { text: s.client }),
                C.el('td', { class: 'num', text: C.duration(s.age_s) }),
                C.el('td', { class: 'num', text: C.duration(s.lifetime_left_s) }),
                C.el('td', { class: 'num', text: String(s.permissions) }), C.el('td', { class: 'num', text: String(s.channels) }),
                C.el('td', { class: 'num', text: C.bytes(s.bytes_from_client) + ' / ' + C.count(s.packets_from_client) + ' pkt' }),
                C.el('td', { class: 'num', text: C.bytes(s.bytes_to_client) + ' / ' + C.count(s.packets_to_client) + ' pkt' }),
                actions);
            });
            // Keep a row whose button waits for its second click.
            const body = document.querySelector('#sessions-table tbody');
            if (body.querySelector('button.confirm')) return;
            body.replaceChildren(...rows);
            C.set('sessions-count', shown.length + ' of ' + sessions.length + ' sessions');
          }

          async function refresh() {
            const all = document.getElementById('all-nodes').checked;
            const d = await C.api('GET', '/sessions' + (all ? '?fleet=1' : ''));
            sessions = d.sessions;
            render();
          }

          function banRow(b, configured) {
            const actions = C.el('td');
            if (!configured) {
              actions.append(C.confirmButton('Remove', 'Remove ' + b.cidr + '?', async () => {
                try {
                  await C.api('DELETE', '/bans/' + b.cidr.split('/').map(encodeURIComponent).join('/'));
                  message('bans-message', 'Ban on ' + b.cidr + ' removed.', false);
                } catch (e) {
                  message('bans-message', 'Could not remove ' + b.cidr + ': ' + e.message, true);
                }
                await refreshBans();
              }));
            }
            const when = (t) => t ? new Date(t * 1000).toLocaleString() : '–';
            return C.el('tr', { 'data-cidr': b.cidr },
              C.el('td', { text: b.cidr }), C.el('td', { text: configured ? 'configuration' : (b.reason || '') }),
              C.el('td', { text: configured ? 'never' : (b.expires_at ? when(b.expires_at) : 'never') }),
              C.el('td', { text: configured ? '–' : when(b.created_at) }), C.el('td', { text: b.node || '–' }), actions);
          }

          async function refreshBans() {
            const d = await C.api('GET', '/bans');
            const body = document.querySelector('#bans-table tbody');
            if (body.querySelector('button.confirm')) return;
            body.replaceChildren(...d.configured.map((c) => banRow({ cidr: c }, true)), ...d.bans.map((b) => banRow(b, false)));
          }

          document.getElementById('ban-form').addEventListener('submit', async (event) => {
            event.preventDefault();
            const cidr = document.getElementById('ban-cidr').value.trim();
            const reason = document.getElementById('ban-reason').value.trim();
            const expires = document.getElementById('ban-expires').value.trim();
            const body = { cidr };
            if (reason) body.reason = reason;
            if (expires) body.expires_in = Number(expires);
            try {
              const r = await C.api('POST', '/bans', body);
              message('bans-message', 'Banned ' + r.ban.cidr + (r.fleet ? ' on every node.' : ' on this node.'), false);
              document.getElementById('ban-form').reset();
            } catch (e) {
              message('bans-message', 'Ban refused: ' + e.message, true);
            }
            await refreshBans();
          });

          for (const th of document.querySelectorAll('#sessions-table th[data-key]')) {
            th.addEventListener('click', () => {
              if (sortKey === th.dataset.key) sortUp = !sortUp;
              else { sortKey = th.dataset.key; sortUp = true; }
              render();
            });
          }
          document.getElementById('filter-user').addEventListener('input', render);
          document.getElementById('all-nodes').addEventListener('change', refresh);

          C.every(3000, async () => {
            if (selfNode === null) {
              try { selfNode = (await C.api('GET', '/fleet')).self || ''; } catch (e) { if (e.status === 401) throw e; }
            }
            await refresh();
            await refreshBans();
          });
        })();

        """#
}
