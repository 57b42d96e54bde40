// What a failed call means, in words: one readable sentence per error code the server
// returns (Slack's codes, worded after Slack's docs), for the banner, dialogs and sends.

// Every code the Web API can answer with (messaging/, teams/, jobs/), and the client's own
// (api.js). tests/test_error_messages.py checks that a new server code is added here.
const MESSAGES = {
  // The client's own: the answer never came, or could not be read.
  network: 'Could not reach the server. Check your connection and try again.',
  invalid_response: 'The server sent an answer that could not be read. Try again in a moment.',
  unknown_error: 'Something went wrong on the server. Try again in a moment.',

  // Signing in, sessions and tokens.
  not_authed: 'You are signed out. Sign in again to continue.',
  invalid_auth: 'Your sign-in is no longer valid. Sign in again to continue.',
  invalid_csrf: 'This page has expired. Reload it and try again.',
  token_revoked: 'This token was revoked. Sign in again to continue.',
  account_inactive: 'This account has been deactivated.',
  user_disabled: 'That person has been deactivated.',
  user_is_deactivated: 'That person has been deactivated.',
  not_allowed_token_type: 'An app cannot do that: only a person signed in can.',
  not_an_admin: 'Only an admin of this workspace can do that.',
  restricted_action: 'You do not have permission to do that here.',
  wrong_password: 'That email already has an account: use its password.',
  weak_password: 'Choose a password of at least 8 characters.',
  invalid_email: 'That is not an email address.',
  account_exists: 'That email already has an account: sign in with its password.',
  claim_by_email: 'That email already has an account: open the invitation that was emailed to it.',
  invalid_invite: 'This invitation link is not valid.',
  invite_expired: 'This invitation has expired. Ask for a new one.',
  invite_not_sent: 'The invitation could not be emailed. Try again later.',
  already_in_team: 'That person is already in this workspace.',
  cant_invite_self: 'You cannot invite yourself.',
  cant_disable_owner: 'The workspace owner cannot be deactivated.',

  // Conversations.
  channel_not_found: 'That conversation was not found, or you cannot see it.',
  not_in_channel: 'You are not a member of this conversation. Join it first.',
  already_in_channel: 'That person is already in this conversation.',
  is_archived: 'This channel is archived: nothing can be changed or posted in it.',
  already_archived: 'This channel is already archived.',
  not_archived: 'This channel is not archived.',
  cant_archive_general: 'The #general channel cannot be archived.',
  cant_leave_general: 'Everyone stays in #general: it cannot be left.',
  cant_kick_self: 'You cannot remove yourself: leave the channel instead.',
  cant_kick_from_general: 'Nobody can be removed from #general.',
  name_taken: 'That name is already taken by another channel.',
  invalid_name: 'That name is not valid.', // a channel's, or an emoji's in a reaction
  invalid_name_required: 'Give the channel a name.',
  invalid_name_maxlength: 'That name is too long: channel names are at most 80 characters.',
  invalid_name_specials:
    'Channel names can only contain lowercase letters, numbers, hyphens and underscores.',
  method_not_supported_for_channel_type: 'That cannot be done in this kind of conversation.',
  too_long: 'That is too long: a topic or purpose is at most 250 characters.',
  too_many_users: 'Too many people for one group conversation.',
  users_list_not_supplied: 'Choose who to start the conversation with.',
  no_user: 'Choose someone first.',
  invalid_types: 'Those conversation types are not valid.',

  // Messages, threads, reactions and pins.
  no_text: 'Write something first: a message cannot be empty.',
  msg_too_long: 'That message is too long: a message is at most 40,000 characters.',
  message_not_found: 'That message was not found. It may have been deleted.',
  thread_not_found: 'That thread was not found. Its first message may have been deleted.',
  cant_update_message: 'You can only edit your own messages.',
  cant_delete_message: 'You can only delete your own messages.',
  invalid_attachments: 'The message’s attachments are not valid.',
  invalid_blocks: 'The message’s blocks are not valid.',
  invalid_timestamp: 'That message time is not valid.',
  invalid_ts_latest: 'That message time is not valid.',
  already_reacted: 'You already reacted with that emoji.',
  no_reaction: 'You have not reacted with that emoji.',
  too_many_reactions: 'That message has as many reactions as it can take.',
  emoji_not_found: 'That emoji was not found.',
  error_name_taken: 'An emoji with that name already exists.',
  already_pinned: 'That message is already pinned.',
  no_pin: 'That message is not pinned.',
  no_item_specified: 'Pick a message first.',
  no_query: 'Type something to search for.',

  // People, bots and presence.
  user_not_found: 'That person was not found.',
  users_not_found: 'Nobody with that email was found.',
  bot_not_found: 'That app was not found.',
  invalid_presence: 'That presence is not valid: choose active or away.',

  // Requests the server could not take.
  ratelimited: 'You are doing that too often.',
  service_unavailable: 'The service is unavailable for a moment.',
  team_is_moving: 'Your workspace is being moved to a new server.',
  internal_error: 'Something went wrong on the server.',
  fatal_error: 'Something went wrong on the server.',
  request_too_large: 'That is too large to send.',
  invalid_json: 'The request could not be read.',
  json_not_object: 'The request could not be read.',
  invalid_post_type: 'The request could not be read.',
  invalid_arguments: 'Something in that request is not valid.',
  invalid_cursor: 'That page of results is no longer available. Reload and try again.',
  unknown_method: 'The server does not know that request. Reload the page to update the app.',
  method_not_allowed: 'The server does not take that kind of request.',

  // Workspaces, imports, exports and moves (the admin pages).
  team_not_found: 'That workspace was not found.',
  team_not_active: 'That workspace is not active.',
  team_not_importing: 'That workspace is not importing.',
  team_not_empty: 'That workspace is not empty: import into a new workspace or an empty one.',
  domain_taken: 'That address is already taken by another workspace.',
  invalid_domain: 'That workspace address is not valid.',
  owner_not_found: 'That workspace has no active owner.',
  job_not_found: 'That job was not found.',
  no_file_data: 'Choose a file first.',
  file_too_large: 'That file is too large.',
  invalid_shard: 'That is not one of the database shards.',
  no_shards: 'No database shard takes new workspaces now.',
  already_on_shard: 'That workspace already lives on that shard.',
  move_in_progress: 'That workspace is already being moved: let that move finish first.',
  no_move_in_progress: 'That workspace is not being moved.',
  move_already_flipped: 'That move already switched the workspace over: run it again to finish.',
  move_verification_failed: 'The copy did not match, so the workspace stays where it was.',
  invalid_step: 'That is not a step of a move.',
};

// Said after the sentence of a refusal that passes: when to try again.
const TRY_AGAIN = new Set(['ratelimited', 'service_unavailable', 'team_is_moving', 'internal_error',
  'fatal_error']);

function tryAgain(retryAfter) {
  if (!(retryAfter > 0)) return 'Try again in a moment.';
  if (retryAfter < 60) return `Try again in ${retryAfter} second${retryAfter === 1 ? '' : 's'}.`;
  const minutes = Math.ceil(retryAfter / 60);
  return `Try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`;
}

// error: an ApiError ({code, status, retryAfter}), a bare code (an outbox entry keeps
// only that), or any other exception. Returns the sentence to show and the code to keep
// for support ('' when there is none).
export function describeError(error) {
  const code = typeof error === 'string' ? error : error?.code || '';
  const status = error?.status || 0;
  if (!code) {
    const text = 'Something went wrong in the app. Reload the page and try again.';
    return { text, code: error?.message || '' };
  }
  let text = MESSAGES[code];
  // A gateway's or proxy's 5xx page has no code of ours: the server failed, say so.
  if (status >= 500 && (!text || code === 'invalid_response')) text = MESSAGES.internal_error;
  if (!text) return { text: `That did not work: the server said “${code}”.`, code };
  if (TRY_AGAIN.has(code) || status >= 500) text = `${text} ${tryAgain(error?.retryAfter)}`;
  if (status >= 500) return { text, code: `${code}, HTTP ${status}` };
  return { text, code };
}

// The sentence, with the code after it in small type (and as the tooltip) for support.
export function errorNode(error, lead = '') {
  const { text, code } = describeError(error);
  const node = document.createElement('span');
  node.className = 'error-message';
  node.append(lead ? `${lead} ${text}` : text);
  if (code) node.title = `Error code: ${code}`;
  if (code && !text.includes(code)) {
    const small = document.createElement('small');
    small.className = 'error-code';
    small.textContent = `(${code})`;
    node.append(' ', small);
  }
  return node;
}
