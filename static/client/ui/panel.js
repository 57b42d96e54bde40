// The right-hand panel: one of a thread, the member list, pins or search results at a time.

const panel = () => document.getElementById('side-panel');

export function openPanel(kind, title) {
  const node = panel();
  node.hidden = false;
  node.dataset.kind = kind;
  node.querySelector('.panel-title').textContent = title;
  const body = node.querySelector('.panel-body');
  body.replaceChildren();
  return body;
}

export function panelKind() {
  const node = panel();
  return node.hidden ? null : node.dataset.kind;
}

export function closePanel() {
  const node = panel();
  node.hidden = true;
  node.dataset.kind = '';
  node.querySelector('.panel-body').replaceChildren();
}
