// What the buttons on a message do: react, reply in thread, edit, delete, pin, and retry
// or discard a send that failed.
import { call } from '../api.js';
import { userName } from '../names.js';
import { forget, retry } from '../outbox.js';
import { unescapeText } from '../render/mrkdwn.js';
import { state } from '../store.js';
import { showError } from './banner.js';
import { encodeOutgoing } from './composer.js';
import { confirmAction } from './dialogs.js';
import { pickEmoji } from './picker.js';

// Mrkdwn back to what a person types: mentions as @handles, entities unescaped.
export function editableText(text) {
  const plain = (text || '')
    .replace(/<@([UW][A-Z0-9]+)(?:\|[^>]*)?>/g, (all, id) => `@${state.users.get(id)?.name || userName(id)}`)
    .replace(/<#([CG][A-Z0-9]+)\|([^>]*)>/g, (all, id, name) => `#${name}`)
    .replace(/<!(here|channel|everyone)>/g, (all, word) => `@${word}`);
  return unescapeText(plain);
}

function editInPlace(row, channelId, message) {
  const text = row.querySelector('.text');
  const form = document.createElement('form');
  form.className = 'edit-form';
  const box = document.createElement('textarea');
  box.value = editableText(message.text);
  box.setAttribute('aria-label', 'Edit message');
  const hint = document.createElement('div');
  hint.className = 'muted';
  hint.textContent = 'Enter to save, Escape to cancel';
  form.append(box, hint);
  text.replaceWith(form);
  box.focus();
  // Put the text back; a successful edit arrives as message_changed and re-renders it.
  const cancel = () => form.replaceWith(text);
  box.addEventListener('keydown', async (event) => {
    if (event.key === 'Escape') cancel();
    if (event.key !== 'Enter' || event.shiftKey) return;
    event.preventDefault();
    try {
      const edit = { channel: channelId, ts: message.ts, text: encodeOutgoing(box.value) };
      // Blocks are shown in place of the text: the edited text replaces them, as the
      // rich_text blocks that Slack's own client sends with an edit do.
      if (message.blocks?.length) edit.blocks = [];
      await call('chat.update', edit);
      cancel();
    } catch (error) {
      showError(error);
    }
  });
}

// messageActions(openThread)(() => channelId) is the onAction of one timeline.
export const messageActions = (openThread) => (channelOf) => async (action, message, entry, button) => {
    const channelId = entry?.channel || channelOf();
    try {
      switch (action) {
        case 'react': {
          const name = await pickEmoji(button);
          if (name) await call('reactions.add', { channel: channelId, timestamp: message.ts, name });
          break;
        }
        case 'toggle-reaction': {
          const name = button.dataset.name;
          const reaction = (message.reactions || []).find((r) => r.name === name);
          const mine = reaction?.users.includes(state.self.id);
          await call(mine ? 'reactions.remove' : 'reactions.add', { channel: channelId, timestamp: message.ts, name });
          break;
        }
        case 'reply':
          openThread(channelId, message.thread_ts || message.ts);
          break;
        case 'edit':
          editInPlace(button.closest('.msg'), channelId, message);
          break;
        case 'delete':
          if (await confirmAction('Delete message?', 'This cannot be undone.')) {
            await call('chat.delete', { channel: channelId, ts: message.ts });
          }
          break;
        case 'pin':
        case 'unpin':
          await call(action === 'pin' ? 'pins.add' : 'pins.remove', { channel: channelId, timestamp: message.ts });
          break;
        case 'retry-send':
          retry(entry.client_msg_id);
          break;
        case 'discard-send':
          forget(entry.client_msg_id);
          break;
        default:
      }
    } catch (error) {
      showError(error);
    }
  };
