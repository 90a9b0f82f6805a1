extension ConsoleScript {
    /// `check.js`: the self-test. For each URL, two `RTCPeerConnection`s with only that TURN
    /// server and `iceTransportPolicy: "relay"` connect to each other (relay to relay, both
    /// through this server) and echo random bytes over a data channel. Reported per URL: relay
    /// candidate gathered or the error code (`icecandidateerror`), time from offer to open data
    /// channel, the selected pair's `currentRoundTripTime` from `getStats()`, the echo compared
    /// byte for byte. Nothing about the browser's own addresses is shown. The credential: a REST
    /// one minted by `POST /console/credential` when a secret is configured and no user is
    /// typed; otherwise the user and password typed. Results are also in `window.TraverseCheck`.
    static let check = #"""
        'use strict';
        (function () {
          const C = window.TraverseConsole;
          const STEP_TIMEOUT_MS = 10000;
          const PAYLOAD_BYTES = 1024;
          let config = null;
          const state = { running: false, done: false, results: [] };
          window.TraverseCheck = state;

          function timeout(ms, what) {
            return new Promise((resolve) => setTimeout(() => resolve({ timeout: what }), ms));
          }

          async function relayProtocolAndRtt(pc) {
            const stats = await pc.getStats();
            let pair = null;
            stats.forEach((s) => {
              if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
            });
            if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
            if (!pair) return {};
            const local = stats.get(pair.localCandidateId);
            return { rttMs: pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
                     type: local && local.candidateType, protocol: local && local.relayProtocol };
          }

          async function checkOne(url, credential) {
            const r = { url, relay: false, error: null, connectMs: null, rttMs: null, echo: null, protocol: null, ok: false };
            const iceServers = [{ urls: [url], username: credential.username, credential: credential.password }];
            let a, b;
            try {
              a = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
              b = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
            } catch (e) {
              r.error = 'not usable: ' + e.message;
              return r;
            }
            const errors = [];
            let resolveGathered;
            const gathered = new Promise((resolve) => { resolveGathered = resolve; });
            for (const [pc, other] of [[a, b], [b, a]]) {
              pc.addEventListener('icecandidateerror', (e) => {
                errors.push(e.errorCode ? (e.errorCode + (e.errorText ? ' ' + e.errorText : '')) : (e.errorText || 'error'));
              });
              pc.addEventListener('icecandidate', (e) => {
                if (e.candidate && e.candidate.candidate) {
                  if (pc === a && e.candidate.type === 'relay') r.relay = true;
                  other.addIceCandidate(e.candidate).catch(() => {});
                } else if (!e.candidate && pc === a) {
                  resolveGathered();
                }
              });
            }
            try {
              const channel = a.createDataChannel('traverse-check');
              channel.binaryType = 'arraybuffer';
              b.addEventListener('datachannel', (e) => {
                e.channel.binaryType = 'arraybuffer';
                e.channel.onmessage = (m) => e.channel.send(m.data);
              });
              const opened = new Promise((resolve) => { channel.onopen = () => resolve({ open: true }); });
              const start = performance.now();
              await a.setLocalDescription(await a.createOffer());
              await b.setRemoteDescription(a.localDescription);
              await b.setLocalDescription(await b.createAnswer());
              await a.setRemoteDescription(b.localDescription);
              const noRelay = gathered.then(() => r.relay ? new Promise(() => {}) : { failed: true });
              const outcome = await Promise.race([opened, noRelay, timeout(STEP_TIMEOUT_MS, 'connect')]);
              if (!outcome.open) {
                r.error = errors.length ? errors[0] : (r.relay ? 'no connection within 10 s' : 'no relay candidate');
                return r;
              }
              r.connectMs = performance.now() - start;
              const payload = crypto.getRandomValues(new Uint8Array(PAYLOAD_BYTES));
              const echoed = new Promise((resolve) => { channel.onmessage = (m) => resolve({ data: new Uint8Array(m.data) }); });
              channel.send(payload);
              const echo = await Promise.race([echoed, timeout(5000, 'echo')]);
              if (!echo.data) {
                r.echo = 'no echo within 5 s';
              } else {
                const same = echo.data.length === payload.length && echo.data.every((v, i) => v === payload[i]);
                r.echo = same ? PAYLOAD_BYTES + ' bytes, identical' : 'DIFFERENT (' + echo.data.length + ' bytes back)';
                r.echoOk = same;
              }
              const stats = await relayProtocolAndRtt(a);
              r.rttMs = stats.rttMs;
              r.protocol = stats.protocol || null;
              r.ok = r.relay && !!r.echoOk && stats.type === 'relay';
              if (stats.type && stats.type !== 'relay') r.error = 'selected a ' + stats.type + ' candidate, not relay';
              return r;
            } catch (e) {
              r.error = r.error || String(e.message || e);
              return r;
            } finally {
              a.close();
              b.close();
            }
          }

          function resultRow(r) {
            const relay = r.relay ? 'gathered' + (r.protocol ? ' (' + r.protocol + ')' : '') : (r.error ? 'error ' + r.error : 'none');
            return C.el('tr', { 'data-url': r.url, 'data-ok': r.ok ? '1' : '0' },
              C.el('td', { text: r.url }),
              C.el('td', { class: r.relay ? '' : 'error', text: relay }),
              C.el('td', { class: 'num', text: r.connectMs !== null ? C.fixed(r.connectMs, 0) + ' ms' : '–' }),
              C.el('td', { class: 'num', text: r.rttMs !== null && r.rttMs !== undefined ? C.fixed(r.rttMs, 1) + ' ms' : '–' }),
              C.el('td', { text: r.echo || '–' }),
              C.el('td', {}, C.el('span', { class: 'badge ' + (r.ok ? 'pass' : 'fail'), text: r.ok ? 'pass' : 'fail' }),
                r.ok || !r.relay || !r.error ? '' : ' ' + r.error));
          }

          async function credential() {
            const user = document.getElementById('check-user').value.trim();
            const password = document.getElementById('check-password').value;
            if (user) return { username: user, password, source: 'user ' + user };
            if (!config.rest) throw new Error('give a user and password (no REST secret is configured)');
            const c = await C.api('POST', '/console/credential');
            return { username: c.username, password: c.password, source: 'a REST credential valid ' + c.ttl + ' s' };
          }

          async function run() {
            if (state.running) return;
            state.running = true;
            state.done = false;
            state.results = [];
            const body = document.querySelector('#check-results tbody');
            body.replaceChildren();
            const button = document.getElementById('check-run');
            button.disabled = true;
            try {
              if (!config) config = await C.api('GET', '/console/check.json');
              const urls = document.getElementById('check-urls').value.split('\n').map((u) => u.trim()).filter(Boolean);
              const cred = await credential();
              for (const url of urls) {
                C.set('check-summary', 'Testing ' + url + ' with ' + cred.source + '…');
                const r = await checkOne(url, cred);
                state.results.push(r);
                body.append(resultRow(r));
              }
              const passed = state.results.filter((r) => r.ok).length;
              C.set('check-summary', passed + ' of ' + state.results.length + ' URLs passed (' + cred.source + ', '
                + new Date().toLocaleTimeString() + ').');
            } catch (e) {
              state.error = String(e.message || e);
              C.set('check-summary', 'Self-test not run: ' + state.error);
            } finally {
              state.running = false;
              state.done = true;
              button.disabled = false;
            }
          }

          document.getElementById('check-form').addEventListener('submit', (event) => {
            event.preventDefault();
            run();
          });

          C.every(60000, async () => {
            if (config) return;
            config = await C.api('GET', '/console/check.json');
            const area = document.getElementById('check-urls');
            if (!area.value.trim()) area.value = config.urls.join('\n');
            C.set('check-credential-note', config.rest
              ? 'Leave the user empty to use a REST credential minted from auth.secrets (valid 5 minutes), or type a user and password.'
              : 'No REST secret is configured: type a user and password (realm ' + config.realm + ').');
          });
        })();

        """#
}
