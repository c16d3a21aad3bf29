// The Embeddings tab's selection script. webapp/explorer_tab.py hands it to a gr.HTML bridge
// as js_on_load, so it is a function body (`trigger` sends the bridge's events).
// A click (nearest point within 10 px) or a dragged box on #ps-map-a / #ps-map-b -> the
// positions of the points under it, outlined on both maps and sent as a 'select' event.
// Vega draws the points as <path>s of the symbol mark, in the order of the plot's rows, so a
// position is a row of the frame `map_frame` (webapp/explorer_maps.py) made.
const MAPS = ['ps-map-a', 'ps-map-b'];
if (window.__psExplorer) { window.__psExplorer.trigger = trigger; return; }
const bridge = { trigger: trigger };
window.__psExplorer = bridge;
let drag = null;
const points = (root) => Array.from(root.querySelectorAll('g.mark-symbol.role-mark path'));
function outline(positions) {
  for (const id of MAPS) {
    const root = document.getElementById(id);
    if (!root) continue;
    const all = points(root);
    for (const p of all) { p.style.stroke = ''; p.style.strokeWidth = ''; p.style.fill = ''; }
    for (const i of positions) {  // filled with its class colour, ringed in near-black
      const p = all[i];
      if (p) {
        p.style.fill = p.getAttribute('stroke') || '#888';
        p.style.stroke = '#111';
        p.style.strokeWidth = '1.5px';
      }
    }
  }
}
bridge.outline = outline;
document.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return;
  const root = e.target.closest ? e.target.closest('#ps-map-a, #ps-map-b') : null;
  const svg = root ? root.querySelector('svg') : null;
  if (!svg || !svg.contains(e.target)) return;
  drag = { root: root, x0: e.clientX, y0: e.clientY, box: null };
  e.preventDefault();
}, true);
document.addEventListener('pointermove', (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x0, dy = e.clientY - drag.y0;
  if (!drag.box && Math.abs(dx) + Math.abs(dy) < 5) return;
  if (!drag.box) {
    drag.box = document.createElement('div');
    Object.assign(drag.box.style, { position: 'fixed', border: '1px dashed #4338ca',
      background: 'rgba(99, 102, 241, 0.12)', pointerEvents: 'none', zIndex: 1000 });
    document.body.appendChild(drag.box);
  }
  Object.assign(drag.box.style, { left: Math.min(e.clientX, drag.x0) + 'px',
    top: Math.min(e.clientY, drag.y0) + 'px', width: Math.abs(dx) + 'px',
    height: Math.abs(dy) + 'px' });
});
document.addEventListener('pointerup', () => {
  if (!drag) return;
  const d = drag;
  drag = null;
  const all = points(d.root);
  const picked = [];
  if (d.box) {
    const r = d.box.getBoundingClientRect();
    d.box.remove();
    all.forEach((p, i) => {
      const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
      if (x >= r.left && x <= r.right && y >= r.top && y <= r.bottom) picked.push(i);
    });
  } else {
    let best = -1, bestDistance = 100;
    all.forEach((p, i) => {
      const b = p.getBoundingClientRect(), x = b.x + b.width / 2 - d.x0,
        y = b.y + b.height / 2 - d.y0;
      if (x * x + y * y < bestDistance) { bestDistance = x * x + y * y; best = i; }
    });
    if (best >= 0) picked.push(best);
  }
  outline(picked);
  bridge.trigger('select', { map: d.root.id.slice(-1), positions: picked });
});
