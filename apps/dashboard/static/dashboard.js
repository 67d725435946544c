() => {
  // A click on a point of a recorded chart writes its time into the "frame at" box, whose change
  // event shows that frame: gr.Plot has no select event, Plotly's own click event is only in the page.
  // A click on a feed tile writes its address into the source box, which the live view follows.
  const setInput = (selector, value) => {
    const input = document.querySelector(selector);
    if (!input) return;
    input.value = value;
    input.dispatchEvent(new Event('input', {bubbles: true}));
  };
  document.addEventListener('click', (e) => {
    const tile = e.target.closest('.sw-tile');
    if (tile) setInput('#sw-source textarea, #sw-source input', tile.dataset.uri);
  });
  // The operator's keys, outside text boxes: A acknowledge, M mute, N mark as normal, H heat overlay.
  const keys = {a: '#sw-ack', m: '#sw-mute', n: '#sw-mark-normal', h: '#sw-heat input[type=checkbox]'};
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.altKey || e.metaKey || e.target.closest('input, textarea, select, [contenteditable]')) return;
    const target = keys[e.key.toLowerCase()] && document.querySelector(keys[e.key.toLowerCase()]);
    if (!target) return;
    e.preventDefault();
    target.click();
  });
  setInterval(() => {
    for (const plot of document.querySelectorAll('#sw-rec-prob .js-plotly-plot, #sw-rec-quality .js-plotly-plot')) {
      if (!plot.on || plot.dataset.swSeek) continue;
      plot.dataset.swSeek = '1';
      plot.on('plotly_click', (d) => { if (d.points.length) setInput('#sw-seek input', d.points[0].x); });
    }
  }, 500);
}
