extension ConsoleScript {
    /// `live.js`: polls `/console/live.json?since=…` every second, keeps the last 5 minutes and
    /// draws them with Chart.js (line charts on a linear axis of seconds before now: no date
    /// adapter needed; the axis spans the history there is, 1 to 5 minutes); fills the
    /// `traverse top` numbers. Without Chart.js, numbers only.
    static let live = #"""
        'use strict';
        (function () {
          const C = window.TraverseConsole;
          const WINDOW_S = 300;
          const COLORS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#6e7781',
            '#fb8500', '#2da44e', '#a40e26', '#0550ae', '#953800', '#5a32a3', '#116329', '#4d2d00'];
          const s = { t: [], allocations: [], bpsIn: [], bpsOut: [], ppsIn: [], ppsOut: [], cpu: [], load: [],
            drops: {}, auth: {} };
          let since = 0;
          let cores = 1;
          // Seconds the x axis spans: the history there is, in whole minutes, up to 5 minutes.
          let span = 60;
          const charts = {};
          const hasCharts = typeof window.Chart === 'function';
          if (!hasCharts) document.getElementById('no-charts').hidden = false;

          function makeChart(id, yFormat, yMax) {
            if (!hasCharts) return null;
            const canvas = document.getElementById(id);
            const chart = new Chart(canvas, {
              type: 'line',
              data: { datasets: [] },
              options: {
                animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
                interaction: { mode: 'nearest', axis: 'x', intersect: false },
                elements: { point: { radius: 0 }, line: { borderWidth: 1.5, tension: 0 } },
                scales: {
                  x: { type: 'linear', min: -span, max: 0,
                       ticks: { callback: (v) => v === 0 ? 'now' : (span <= 60 ? v + ' s' : (v / 60) + ' min') } },
                  y: { beginAtZero: true, suggestedMax: yMax, ticks: { maxTicksLimit: 5, callback: yFormat } },
                },
                plugins: { legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 24, font: { size: 11 } } },
                           tooltip: { callbacks: { label: (c) => c.dataset.label + ': ' + yFormat(c.parsed.y) } } },
              },
            });
            charts[id] = chart;
            return chart;
          }

          const allocationsChart = makeChart('chart-allocations', (v) => C.count(v), 1);
          const packetsChart = makeChart('chart-packets', (v) => C.count(v), 1);
          const bitsChart = makeChart('chart-bits', (v) => C.bits(v), 1000);
          const dropsChart = makeChart('chart-drops', (v) => C.count(v), 1);
          const authChart = makeChart('chart-auth', (v) => C.count(v), 1);
          const cpuChart = makeChart('chart-cpu', (v) => C.fixed(v, 0) + ' %', 100);

          function append(d) {
            const n = d.t.length;
            const before = s.t.length;
            s.t.push(...d.t);
            s.allocations.push(...d.allocations);
            s.bpsIn.push(...d.bps_in); s.bpsOut.push(...d.bps_out);
            s.ppsIn.push(...d.pps_in); s.ppsOut.push(...d.pps_out);
            s.cpu.push(...d.cpu); s.load.push(...d.load);
            for (const [target, source] of [[s.drops, d.drops], [s.auth, d.auth_failures]]) {
              for (const reason of new Set([...Object.keys(target), ...Object.keys(source)])) {
                if (!target[reason]) target[reason] = new Array(before).fill(0);
                target[reason].push(...(source[reason] || new Array(n).fill(0)));
              }
            }
            // Forget what fell out of the window.
            const oldest = d.now - WINDOW_S * 1000;
            let cut = 0;
            while (cut < s.t.length && s.t[cut] < oldest) cut++;
            if (cut > 0) {
              for (const k of ['t', 'allocations', 'bpsIn', 'bpsOut', 'ppsIn', 'ppsOut', 'cpu', 'load']) s[k].splice(0, cut);
              for (const m of [s.drops, s.auth]) for (const k of Object.keys(m)) m[k].splice(0, cut);
            }
            for (const m of [s.drops, s.auth]) {
              for (const k of Object.keys(m)) if (!m[k].some((v) => v > 0)) delete m[k];
            }
            if (s.t.length) since = s.t[s.t.length - 1];
          }

          function points(values, now, scale) {
            const out = new Array(s.t.length);
            for (let i = 0; i < s.t.length; i++) out[i] = { x: (s.t[i] - now) / 1000, y: values[i] * (scale || 1) };
            return out;
          }

          function dataset(label, data, i, dashed) {
            return { label, data, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
                     borderDash: dashed ? [6, 3] : [], pointStyle: 'line' };
          }

          function draw(now) {
            if (!hasCharts) return;
            allocationsChart.data.datasets = [dataset('allocations', points(s.allocations, now), 0)];
            // "out" dashed: with echoing peers both lines coincide.
            packetsChart.data.datasets = [dataset('in (client → peer)', points(s.ppsIn, now), 0),
                                          dataset('out (peer → client)', points(s.ppsOut, now), 1, true)];
            bitsChart.data.datasets = [dataset('in (client → peer)', points(s.bpsIn, now), 0),
                                       dataset('out (peer → client)', points(s.bpsOut, now), 1, true)];
            dropsChart.data.datasets = Object.keys(s.drops).sort().map((k, i) => dataset(k, points(s.drops[k], now), i));
            const real = Object.keys(s.auth).filter((k) => k !== 'challenge').sort();
            authChart.data.datasets = real.map((k, i) => dataset(k, points(s.auth[k], now), i + 1));
            cpuChart.data.datasets = [dataset('CPU', points(s.cpu, now, 100 / cores), 0),
                                      dataset('load score', points(s.load, now, 100), 3)];
            const covered = s.t.length ? (now - s.t[0]) / 1000 : 0;
            span = Math.min(WINDOW_S, Math.max(60, Math.ceil(covered / 60) * 60));
            for (const chart of Object.values(charts)) {
              chart.options.scales.x.min = -span;
              chart.options.scales.x.ticks.stepSize = span <= 60 ? 10 : 60;
              chart.update('none');
            }
          }

          function top(t) {
            cores = t.cores || 1;
            C.set('top-load', C.percent(t.load));
            C.set('top-state', 'state ' + t.state);
            C.set('top-cpu', C.fixed(t.cpu, 2) + ' / ' + t.cores + ' cores');
            C.set('top-rss', t.rss_bytes ? 'rss ' + C.bytes(t.rss_bytes) : '');
            C.set('top-allocations', t.allocations + ' / ' + t.capacity);
            C.set('top-families', 'ipv4 ' + t.ipv4 + ', ipv6 ' + t.ipv6);
            C.set('top-in', C.bits(t.bits_per_second_in));
            C.set('top-in-packets', C.fixed(t.packets_per_second_in, 0) + ' pkt/s');
            C.set('top-out', C.bits(t.bits_per_second_out));
            C.set('top-out-packets', C.fixed(t.packets_per_second_out, 0) + ' pkt/s');
            C.set('top-requests', String(t.requests));
            C.set('top-created', 'allocations created ' + t.created);
            C.set('top-auth', String(t.auth_failures));
            C.set('top-drops', String(t.drops));
            C.set('top-kernel', 'kernel drops ' + t.kernel_drops);
            const body = document.querySelector('#top-errors tbody');
            body.replaceChildren(...(t.errors.length ? t.errors.map((e) =>
              C.el('tr', { 'data-code': String(e.code) }, C.el('td', { text: String(e.code) }),
                   C.el('td', { class: 'num', text: String(e.total) }), C.el('td', { class: 'num', text: '+' + e.recent })))
              : [C.el('tr', {}, C.el('td', { text: 'none' }))]));
          }

          C.every(1000, async () => {
            const d = await C.api('GET', '/console/live.json' + (since ? '?since=' + since : ''));
            append(d);
            top(d.top);
            draw(d.now);
          });

          window.TraverseLive = { charts, series: s };
        })();

        """#
}
