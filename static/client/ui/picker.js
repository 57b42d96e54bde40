// The emoji picker: a popover with a filter and every emoji (the team's custom ones too).
import { allEmojiNames, emojiNode } from '../render/emoji.js';

let open = null;

function close(value) {
  if (!open) return;
  const { node, resolve, outside } = open;
  open = null;
  document.removeEventListener('mousedown', outside, true);
  node.remove();
  resolve(value);
}

export function pickEmoji(anchor) {
  close(null);
  const node = document.createElement('div');
  node.id = 'emoji-picker';
  node.setAttribute('role', 'dialog');
  node.setAttribute('aria-label', 'Pick an emoji');
  const filter = document.createElement('input');
  filter.type = 'search';
  filter.placeholder = 'Search emoji';
  filter.setAttribute('aria-label', 'Search emoji');
  const grid = document.createElement('div');
  grid.className = 'emoji-grid';
  const draw = () => {
    const q = filter.value.toLowerCase().replace(/:/g, '');
    grid.replaceChildren(
      ...allEmojiNames()
        .filter((n) => n.includes(q))
        .map((name) => {
          const b = document.createElement('button');
          b.type = 'button';
          b.className = 'emoji-choice';
          b.dataset.name = name;
          b.title = `:${name}:`;
          b.append(emojiNode(name));
          return b;
        }),
    );
  };
  grid.addEventListener('click', (event) => {
    const b = event.target.closest('button[data-name]');
    if (b) close(b.dataset.name);
  });
  filter.addEventListener('input', draw);
  filter.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') close(null);
    if (event.key === 'Enter') {
      event.preventDefault();
      const first = grid.querySelector('button[data-name]');
      if (first) close(first.dataset.name);
    }
  });
  node.append(filter, grid);
  document.body.append(node);
  draw(); // filled before it is measured, so it is placed whole on the screen
  const box = anchor.getBoundingClientRect();
  node.style.top = `${Math.max(8, Math.min(box.bottom + 4, window.innerHeight - node.offsetHeight - 8))}px`;
  node.style.left = `${Math.max(8, Math.min(box.left, window.innerWidth - node.offsetWidth - 8))}px`;
  filter.focus();
  return new Promise((resolve) => {
    const outside = (event) => {
      if (!node.contains(event.target)) close(null);
    };
    open = { node, resolve, outside };
    document.addEventListener('mousedown', outside, true);
  });
}
