// Small modal forms on one <dialog>: a title, fields, and buttons; resolves with the values.
import { errorNode } from '../errors.js';
import { el } from '../dom.js';

const dialog = () => document.getElementById('dialog');

// fields: [{name, label, type='text', value='', checked=false}]. onSubmit(values) resolves
// with what went wrong, to show (the dialog stays open): a message, or an error that
// errors.js puts in words; or nothing (it closes). Resolves true once submitted
// successfully, false when cancelled.
export function askForm(title, fields, submitLabel = 'OK', { body = null, onSubmit = async () => null } = {}) {
  const d = dialog();
  const form = el('form', 'dialog-form');
  form.append(el('h2', '', title));
  if (body) form.append(body);
  for (const field of fields) {
    const label = el('label', field.type === 'checkbox' ? 'check' : '', field.label);
    const input = el('input');
    input.name = field.name;
    input.type = field.type || 'text';
    if (input.type === 'checkbox') {
      input.checked = Boolean(field.checked);
      label.prepend(input);
    } else {
      input.value = field.value || '';
      label.append(input);
    }
    form.append(label);
  }
  const error = el('p', 'error');
  error.setAttribute('role', 'alert');
  const buttons = el('div', 'buttons');
  const cancel = el('button', 'secondary', 'Cancel');
  cancel.type = 'button';
  const ok = el('button', 'primary', submitLabel);
  ok.type = 'submit';
  buttons.append(cancel, ok);
  form.append(error, buttons);
  d.replaceChildren(form);
  return new Promise((resolve) => {
    const finish = (result) => {
      d.close();
      resolve(result);
    };
    cancel.addEventListener('click', () => finish(false));
    d.addEventListener('cancel', () => resolve(false), { once: true });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const values = {};
      for (const field of fields) {
        const input = form.elements[field.name];
        values[field.name] = input.type === 'checkbox' ? input.checked : input.value;
      }
      ok.disabled = true;
      const problem = await onSubmit(values);
      ok.disabled = false;
      if (typeof problem === 'string') error.textContent = problem;
      else if (problem) error.replaceChildren(errorNode(problem));
      else finish(true);
    });
    d.showModal();
    form.querySelector('input')?.focus();
  });
}

// A list to pick from (browse channels, start a DM, add people): items [{id, label, detail,
// action, section}], in order; an item whose section differs from the one before starts a
// heading. multi: items are toggled, then picked together with the pickLabel button.
// onPick(ids, close) may fail: what went wrong is said in the dialog, which stays open.
export function showList(title, items, { filterLabel = 'Filter', onPick, multi = false, pickLabel = 'Open' }) {
  const d = dialog();
  const box = el('div', 'dialog-form');
  box.append(el('h2', '', title));
  const filter = el('input');
  filter.type = 'search';
  filter.placeholder = filterLabel;
  filter.setAttribute('aria-label', filterLabel);
  const list = el('ul', 'pick-list');
  const chosen = new Set();
  const error = el('p', 'error');
  error.setAttribute('role', 'alert');
  const pickNow = async (ids) => {
    error.replaceChildren();
    try {
      await onPick(ids, () => d.close());
    } catch (problem) {
      error.replaceChildren(errorNode(problem));
    }
  };
  const draw = () => {
    const q = filter.value.toLowerCase();
    const shown = items.filter((i) => i.label.toLowerCase().includes(q)).slice(0, 200);
    let section = '';
    list.replaceChildren(
      ...shown.flatMap((i) => {
        const heading = i.section && i.section !== section ? [el('li', 'pick-section', i.section)] : [];
        section = i.section || '';
        const li = el('li');
        const pick = el('button', chosen.has(i.id) ? 'pick chosen' : 'pick');
        pick.dataset.id = i.id;
        pick.type = 'button';
        if (multi) pick.setAttribute('aria-pressed', String(chosen.has(i.id)));
        pick.append(el('span', 'label', i.label), el('span', 'detail', i.detail || ''));
        if (i.action) pick.append(el('span', 'pick-action', i.action));
        pick.addEventListener('click', () => {
          if (!multi) return pickNow([i.id]);
          if (chosen.has(i.id)) chosen.delete(i.id);
          else chosen.add(i.id);
          draw();
          // Drawn anew: the keyboard stays on the item it toggled.
          return list.querySelector(`[data-id="${CSS.escape(i.id)}"]`)?.focus();
        });
        li.append(pick);
        return [...heading, li];
      }),
    );
  };
  filter.addEventListener('input', draw);
  const buttons = el('div', 'buttons');
  const close = el('button', 'secondary', 'Close');
  close.type = 'button';
  close.addEventListener('click', () => d.close());
  buttons.append(close);
  if (multi) {
    const open = el('button', 'primary', pickLabel);
    open.type = 'button';
    open.addEventListener('click', () => chosen.size && pickNow([...chosen]));
    buttons.append(open);
  }
  box.append(filter, list, error, buttons);
  d.replaceChildren(box);
  draw();
  d.showModal();
  filter.focus();
}

// onSubmit as for askForm: the action itself, whose refusal is said in the dialog.
export function confirmAction(title, detail, label = 'Delete', { onSubmit } = {}) {
  return askForm(title, [], label, { body: el('p', '', detail), ...(onSubmit && { onSubmit }) });
}
