/// The console's scripts, one per page plus `common.js`. Plain browser JavaScript (no build
/// step, no framework, no module loader); data goes into the page through `textContent` and
/// created elements only, never through HTML strings, so a username cannot become markup.
enum ConsoleScript {
    /// `common.js`: the token (asked once, kept in `sessionStorage`), `api()` for the JSON routes
    /// (bearer token; `X-Traverse-Admin: 1` on anything but GET), formatting, element helpers.
    static let common = #"""
        'use strict';
        (function () {
          const KEY = 'traverse-admin-token';
          const listeners = [];

          function token() { return sessionStorage.getItem(KEY) || ''; }

          function setStatus(text, isError) {
            const el = document.getElementById('status');
            if (!el) return;
            el.textContent = text;
            el.classList.toggle('error', !!isError);
          }

          function askToken() {
            const form = document.getElementById('token-form');
            if (form.hidden) {
              form.hidden = false;
              document.getElementById('token-input').focus();
            }
            setStatus(token() ? 'the token was refused' : 'admin token needed', true);
          }

          class HTTPError extends Error {
            constructor(status, body) {
              super((body && body.error) || ('HTTP ' + status));
              this.status = status;
              this.body = body;
            }
          }

          // One request to a JSON route of this endpoint. Resolves to the parsed body (or null);
          // rejects with HTTPError on a status >= 400 (401: the token form is shown).
          async function api(method, path, body) {
            const headers = { 'Accept': 'application/json' };
            const t = token();
            if (t) headers['Authorization'] = 'Bearer ' + t;
            if (method !== 'GET' && method !== 'HEAD') headers['X-Traverse-Admin'] = '1';
            const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
            if (body !== undefined) {
              headers['Content-Type'] = 'application/json';
              init.body = JSON.stringify(body);
            }
            let response;
            try {
              response = await fetch(path, init);
            } catch (e) {
              setStatus('endpoint unreachable', true);
              throw e;
            }
            const text = await response.text();
            let parsed = null;
            try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = { error: text.trim() }; }
            if (response.status === 401) {
              askToken();
              throw new HTTPError(401, parsed);
            }
            if (response.status >= 400) throw new HTTPError(response.status, parsed);
            setStatus('updated ' + new Date().toLocaleTimeString(), false);
            return parsed;
          }

          // Calls fn now and every `ms` milliseconds, one call at a time; again at once after a
          // token is given.
          function every(ms, fn) {
            let running = false;
            const run = async () => {
              if (running) return;
              running = true;
              try { await fn(); } catch (e) { if (!(e instanceof HTTPError && e.status === 401)) console.warn(e); }
              running = false;
            };
            listeners.push(run);
            run();
            return setInterval(run, ms);
          }

          function el(tag, attrs, ...children) {
            const e = document.createElement(tag);
            for (const [k, v] of Object.entries(attrs || {})) {
              if (v === undefined || v === null || v === false) continue;
              if (k === 'class') e.className = v;
              else if (k === 'text') e.textContent = v;
              else if (k.startsWith('data-') || k === 'href' || k === 'type' || k === 'title' || k === 'aria-label') e.setAttribute(k, v);
              else e[k] = v;
            }
            for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
            return e;
          }

          function set(id, text) {
            const e = document.getElementById(id);
            if (e) e.textContent = text;
          }

          function fixed(v, digits) { return Number(v || 0).toFixed(digits); }
          function bits(v) {
            v = Number(v || 0);
            if (v >= 1e9) return fixed(v / 1e9, 2) + ' Gbit/s';
            if (v >= 1e6) return fixed(v / 1e6, 2) + ' Mbit/s';
            if (v >= 1e3) return fixed(v / 1e3, 1) + ' kbit/s';
            return fixed(v, 0) + ' bit/s';
          }
          function bytes(v) {
            v = Number(v || 0);
            if (v >= 1073741824) return fixed(v / 1073741824, 2) + ' GiB';
            if (v >= 1048576) return fixed(v / 1048576, 1) + ' MiB';
            if (v >= 1024) return fixed(v / 1024, 1) + ' KiB';
            return fixed(v, 0) + ' B';
          }
          function count(v) {
            v = Number(v || 0);
            if (v >= 1e9) return fixed(v / 1e9, 2) + ' G';
            if (v >= 1e6) return fixed(v / 1e6, 2) + ' M';
            if (v >= 1e4) return fixed(v / 1e3, 1) + ' k';
            return fixed(v, v >= 100 || Number.isInteger(v) ? 0 : 1);
          }
          function percent(v) { return fixed(Number(v || 0) * 100, 1) + ' %'; }
          function duration(s) {
            s = Math.max(0, Math.round(Number(s || 0)));
            if (s < 60) return s + ' s';
            if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
            return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
          }

          // A button that acts on the second click ("Sure? …"), since confirm() dialogs block.
          function confirmButton(label, confirmLabel, action) {
            const b = el('button', { type: 'button', text: label });
            let armed = null;
            b.addEventListener('click', async () => {
              if (!armed) {
                b.textContent = confirmLabel;
                b.classList.add('confirm');
                armed = setTimeout(() => { armed = null; b.textContent = label; b.classList.remove('confirm'); }, 5000);
                return;
              }
              clearTimeout(armed);
              armed = null;
              b.disabled = true;
              try { await action(); } finally { b.disabled = false; b.textContent = label; b.classList.remove('confirm'); }
            });
            return b;
          }

          document.addEventListener('DOMContentLoaded', () => {
            const form = document.getElementById('token-form');
            const forget = document.getElementById('forget-token');
            forget.hidden = !token();
            form.addEventListener('submit', (event) => {
              event.preventDefault();
              const value = document.getElementById('token-input').value.trim();
              if (!value) return;
              sessionStorage.setItem(KEY, value);
              document.getElementById('token-input').value = '';
              form.hidden = true;
              forget.hidden = false;
              setStatus('token set', false);
              for (const run of listeners) run();
            });
            forget.addEventListener('click', () => {
              sessionStorage.removeItem(KEY);
              forget.hidden = true;
              location.reload();
            });
          });

          window.TraverseConsole = { api, every, el, set, fixed, bits, bytes, count, percent, duration, confirmButton,
            HTTPError, token, setStatus };
        })();

        """#
}
