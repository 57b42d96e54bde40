// :emoji: names: a standard set shown as characters, and the team's custom emoji as images.
import { state } from '../store.js';
import { safeImageUrl } from './safe_url.js';

export const STANDARD = {
  '+1': '👍', thumbsup: '👍', '-1': '👎', thumbsdown: '👎', smile: '😄', smiley: '😃', grinning: '😀',
  joy: '😂', laughing: '😆', wink: '😉', blush: '😊', heart_eyes: '😍', thinking_face: '🤔',
  slightly_smiling_face: '🙂', upside_down_face: '🙃', sunglasses: '😎', cry: '😢', sob: '😭',
  scream: '😱', rage: '😡', neutral_face: '😐', confused: '😕', sweat_smile: '😅', relieved: '😌',
  sleeping: '😴', heart: '❤️', broken_heart: '💔', fire: '🔥', tada: '🎉', rocket: '🚀', eyes: '👀',
  white_check_mark: '✅', heavy_check_mark: '✔️', x: '❌', warning: '⚠️', question: '❓',
  exclamation: '❗', wave: '👋', clap: '👏', pray: '🙏', muscle: '💪', ok_hand: '👌', raised_hands: '🙌',
  point_up: '☝️', point_right: '👉', star: '⭐', sparkles: '✨', zap: '⚡', sunny: '☀️', rainbow: '🌈',
  coffee: '☕', beer: '🍺', pizza: '🍕', cake: '🍰', bug: '🐛', memo: '📝', bulb: '💡', lock: '🔒',
  key: '🔑', bell: '🔔', calendar: '📅', chart_with_upwards_trend: '📈', hourglass: '⌛',
  hundred: '💯', 100: '💯', ship: '🚢', robot_face: '🤖', cat: '🐱', dog: '🐶', unicorn_face: '🦄',
  see_no_evil: '🙈', facepalm: '🤦', shrug: '🤷', skull: '💀', ghost: '👻', party_parrot: '🦜',
  gift: '🎁', trophy: '🏆', moneybag: '💰', computer: '💻', link: '🔗', pushpin: '📌',
};

// The names the picker offers first.
export const FAVOURITES = ['+1', 'heart', 'joy', 'tada', 'eyes', 'white_check_mark', 'fire', 'pray',
  'rocket', 'thinking_face', 'smile', 'wave', 'clap', '100', 'x', 'warning'];

const MAX_ALIAS_HOPS = 5;

// { char } for a standard emoji, { url } for a custom one, or null when unknown.
export function lookupEmoji(name) {
  let current = name;
  for (let hop = 0; hop < MAX_ALIAS_HOPS; hop += 1) {
    const custom = state.emoji[current];
    if (custom === undefined) break;
    if (!custom.startsWith('alias:')) {
      const url = safeImageUrl(custom);
      return url ? { url } : null;
    }
    current = custom.slice('alias:'.length);
  }
  const base = current.split('::')[0];
  return STANDARD[base] ? { char: STANDARD[base] } : null;
}

export function allEmojiNames() {
  const custom = Object.keys(state.emoji).sort();
  const standard = Object.keys(STANDARD).filter((n) => !FAVOURITES.includes(n));
  return [...FAVOURITES, ...custom, ...standard];
}

export function emojiNode(name) {
  const found = lookupEmoji(name);
  if (!found) return document.createTextNode(`:${name}:`);
  if (found.url) {
    const img = document.createElement('img');
    img.className = 'emoji';
    img.src = found.url;
    img.alt = `:${name}:`;
    img.title = `:${name}:`;
    return img;
  }
  const span = document.createElement('span');
  span.className = 'emoji';
  span.title = `:${name}:`;
  span.textContent = found.char;
  return span;
}
