// The "X is typing…" line under a conversation or an open thread.
import { userName } from '../names.js';
import { state } from '../store.js';

// `place` is a key of state.typing: a conversation id, or threadKey() of a thread.
export function typingLine(place) {
  const typing = state.typing.get(place);
  const now = Date.now();
  const who = typing ? [...typing].filter(([, until]) => until > now).map(([user]) => userName(user)) : [];
  return who.length ? `${who.join(', ')} ${who.length === 1 ? 'is' : 'are'} typing…` : '';
}
