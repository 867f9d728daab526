%% @doc The Erlang API of ExESDB, an event store on LMDB.
%%
%% A store is a directory opened with {@link open/2}; the returned handle
%% may be shared by any number of processes and stays valid until
%% {@link close/1} (or until it is garbage collected).
%%
%% Streams are named by binaries. Versions are 1-based: a stream's first
%% event has version 1 and version 0 means the stream is empty or absent.
%% Global positions in `$all' are 1-based and gap-free.
%%
%% Mutations (appends, deletes, snapshots, checkpoints) are queued to the
%% store's group-commit writer; the calling process waits for the reply.
%% Reads run on dirty IO schedulers and never wait for writers.
%% They come in pages bounded by count (10,000) and by bytes
%% (`max_read_bytes'): a page can be short without being the end, so the
%% `read_*_page' functions return where the next page starts (`eof' at
%% the end); `read_stream/5', `read_all/4' and `read_type/4' follow it.
%%
%% Errors come back as `{error, Reason}' with `Reason' an atom such as
%% `wrong_expected_version', `stream_exists', `stream_not_found',
%% `stream_deleted', `snapshot_not_found', `subscription_not_found' (an
%% absent checkpoint or ended subscription), `closed', `already_open',
%% `read_only', `no_events', `overloaded' (the writer queue is full:
%% nothing was written), `timeout' (the caller stopped waiting and the
%% command was withdrawn: never applied) or `outcome_unknown' (the caller
%% stopped waiting after the writer took the command: it may be applied;
%% no late reply comes), or `{limit_exceeded, Key, Max}' naming the limit
%% a command exceeds and its value (e.g. `{limit_exceeded,
%% max_event_bytes, 16777216}'): the words of the Elixir API, both APIs
%% sit on `ex_esdb_backend'. An argument of the wrong type (a stream id
%% that is not a binary, a negative count, ...) is answered
%% `{error, {invalid_What, Value}}' with the Elixir API's names
%% (`invalid_stream_id', `invalid_expected_version', `invalid_start',
%% `invalid_count', `invalid_direction', `invalid_event_type',
%% `invalid_source_uuid', `invalid_timeout', `invalid_path', ...);
%% nothing raises but a store handle that is not one (`badarg').
-module(ex_esdb).

-export([open/2, attach/1, close/1,
         append/4, append/5,
         read_stream/5, read_all/4, read_type/4,
         read_stream_page/5, read_all_page/4, read_type_page/4,
         stream_version/2, stream_exists/2, streams/1, list_streams/3,
         delete_stream/3,
         put_snapshot/6, get_snapshot/2, delete_snapshot/2,
         put_checkpoint/4, get_checkpoint/2, delete_checkpoint/2,
         checkpoints/1,
         subscribe/2, subscribe/3, subscribe/4, grant/3, unsubscribe/2,
         stats/1, limits/1, verify/1, backup/2,
         uuid_v4/0, uuid_to_string/1, uuid_from_string/1,
         default_timeout/0]).

-export_type([store/0, option/0, expected/0, new_event/0, event/0,
              direction/0, next/0, snapshot/0, checkpoint/0,
              stream_info/0]).

%% Time a mutation waits for the writer's reply by default.
-define(TIMEOUT, 10000).
%% Appends longer than this are checked against the count limit first.
-define(CHECKED_COUNT, 1000).
%% Page size when listing everything; the NIF caps a call at 10,000.
-define(PAGE, 1000).
%% Events asked of one page by the reads that return all they read.
-define(READ_PAGE, 1000).

-opaque store() :: reference() | {ex_esdb_attached, atom()}.
-type option() :: durability | map_size | create | readonly | file_mode
                | max_stream_id | max_event_type | max_event_bytes
                | max_append_events | max_append_bytes | max_key
                | max_read_bytes.
-type expected() :: any | no_stream | stream_exists | non_neg_integer().
%% append/4,5 also take {retry, expected()}: the same events sent again
%% after an unknown outcome (docs/FORMAT.md, "Retries").
-type append_expected() :: expected() | {retry, expected()}.
-type direction() :: forward | backward.
%% Where a page of events left off: `eof' when the source held nothing
%% more (as of the read), else the version (stream reads) or global
%% position (`$all' and type reads) to pass as `From' for the next page.
-type next() :: eof | pos_integer().
-type uuid() :: <<_:128>>.
%% An event to append. `event_id' and the two optional ids are either
%% 16 raw bytes or UUID text such as `<<"8e4b1c2a-...">>'.
-type new_event() :: #{event_type := binary(),
                       data => binary(),
                       metadata => binary(),
                       event_id => binary(),
                       causation_id => binary() | undefined,
                       correlation_id => binary() | undefined}.
-type event() :: #{position := pos_integer(),
                   stream_id := binary(),
                   version := pos_integer(),
                   event_id := uuid(),
                   event_type := binary(),
                   data := binary(),
                   metadata := binary(),
                   causation_id := uuid() | undefined,
                   correlation_id := uuid() | undefined,
                   created_us := non_neg_integer()}.
-type snapshot() :: #{source_uuid := binary(),
                      source_version := non_neg_integer(),
                      source_type := binary(),
                      data := binary(),
                      metadata := binary(),
                      created_us := non_neg_integer()}.
-type checkpoint() :: #{name := binary(),
                        checkpoint := non_neg_integer(),
                        definition := binary(),
                        updated_us := non_neg_integer()}.
-type stream_info() :: #{stream_id := binary(),
                         version := non_neg_integer(),
                         deleted := boolean()}.

%% ---- life cycle ---------------------------------------------------------

%% @doc Open (by default create) the store in directory `Path'.
%%
%% `Path' is the store's own directory. ExESDB (Elixir) puts a store in
%% `data_dir/store_id', so the store it starts with
%% `data_dir: "/var/lib/orders", store_id: :orders' is opened here as
%% `"/var/lib/orders/orders"' (the CLI: `--store /var/lib/orders/orders',
%% or `--data-dir /var/lib/orders --store-id orders').
%%
%% `Opts' is a map or a proplist (a bare atom means `true'):
%% <ul>
%%   <li>`durability': `sync' (default: LMDB's two flushes per commit;
%%       every acknowledged write survives a crash of the VM, of the OS and
%%       a power loss; `strict' is its old name), `no_meta_sync' (opt-in,
%%       one flush per commit: survives a crash of the VM; a power loss can
%%       roll back the last acknowledged commit, never corrupts the store)
%%       or `nosync' (no flush; tests and benchmarks only);</li>
%%   <li>`map_size': initial LMDB map size in bytes (default 64 MiB, at
%%       least 1 MiB; it grows as needed);</li>
%%   <li>`max_queue_bytes': bytes of encoded commands that may wait for
%%       the writer (default 256 MiB); a write beyond it answers
%%       `{error, overloaded}' at once and is not applied;</li>
%%   <li>`create': create the directory when missing (default `true');</li>
%%   <li>`readonly': every mutation answers `{error, read_only}';</li>
%%   <li>`file_mode': permission bits of the files the store creates
%%       (data, lock file, backups; default `8#600'); directories it
%%       creates get them plus search where read is allowed (`8#700');</li>
%%   <li>limits, positive integers: `max_stream_id' (bytes, default 1024),
%%       `max_event_type' (512), `max_event_bytes' (data + metadata of one
%%       event, 16 MiB), `max_append_events' (10,000), `max_append_bytes'
%%       (64 MiB), `max_key' (snapshot and checkpoint names, 1024);</li>
%%   <li>`max_read_bytes': the byte budget of one page of events (data,
%%       metadata, stream id and type; default 16 MiB). A page holds at
%%       least one event however big, so paging always makes progress.</li>
%%   <li>`max_fanout_bytes': bytes of committed events that may wait for
%%       delivery to subscribers (default 64 MiB). Appends are answered
%%       before their fan-out; a commit that does not fit is not fanned
%%       out, and each subscription that may have missed it is ended with
%%       `{subscription_overflow, Sub, FirstPositionMissed}'.</li>
%% </ul>
%% A store keeps its limits: a new one records those it is created with
%% (defaults for the ones not given); reopening it with limits changes
%% the ones given (through a command, as replicas will) and keeps the
%% rest; reopening without limits, or read-only, applies the stored ones.
%% Lowered limits apply to later commands only. {@link limits/1} tells
%% the limits in force.
%% An unknown key or a value of the wrong type gives
%% `{error, {invalid_option, Key}}'; a value the core rejects as out of
%% range gives `{error, invalid_option}'. A path already open in this
%% node gives `{error, already_open}'; a missing one with `{create, false}'
%% gives `{error, no_store}'. One process writes a store: while another
%% one (a VM, `ex_esdb_ctl append') has it open for writing, opening it
%% for writing gives `{error, locked}' (`readonly' opens still work), and
%% this node's name and OS pid are what that other process is told.
-spec open(string() | binary(), map() | proplists:proplist()) ->
          {ok, store()} | {error, term()}.
open(Path, Opts) when is_list(Opts) ->
    open(Path, proplists:to_map(Opts));
open(Path, Opts) when is_map(Opts) ->
    case [K || {K, V} <- maps:to_list(Opts), not valid_option(K, V)] of
        [] -> checked([path_arg(Path)], fun() ->
                  ex_esdb_backend:open(path(Path), Opts#{owner => owner()})
              end);
        [Key | _] -> {error, {invalid_option, Key}}
    end;
open(_Path, Opts) ->
    {error, {invalid_options, Opts}}.

%% Who holds the store, for the message of a process it refuses.
owner() -> atom_to_binary(node()).

valid_option(durability, V) -> lists:member(V, [sync, strict, no_meta_sync, nosync]);
valid_option(create, V) -> is_boolean(V);
valid_option(readonly, V) -> is_boolean(V);
valid_option(file_mode, V) -> is_integer(V) andalso V >= 0;
valid_option(K, V) ->
    lists:member(K, [map_size, max_queue_bytes, max_stream_id, max_event_type,
                     max_event_bytes, max_append_events, max_append_bytes,
                     max_key, max_read_bytes, max_fanout_bytes])
        andalso is_integer(V) andalso V > 0.

%% @doc A handle on the store `StoreId' that `ExESDB.System' runs in this
%% VM (started in your supervision tree, e.g. `'Elixir.ExESDB.System':
%% start_link([{store_id, orders}, {data_dir, Dir}, {db_type, cluster},
%% {seed_nodes, Nodes}])'): every function of this module works on it
%% with the same arguments and answers. In cluster mode (`db_type:
%% cluster') this is how the Erlang API runs on a cluster: reads and
%% subscriptions are this node's replica's; mutations go to the leader
%% through the gateway, are retried on a leadership change within their
%% timeout and answer once this node's replica has applied them, so a
%% read here right after sees them. A node that cannot reach a quorum
%% answers `{error, no_quorum}' or `{error, {not_leader, Node}}' (README,
%% "Cluster mode from Elixir"; docs/CLUSTER.md). `{error,
%% store_not_started}' when no such store runs (also from later calls
%% once it stopped). On a store served by a C node (`backend: cnode')
%% every call goes through the store's `ExESDB.Backend', with the same
%% answers.
%% {@link close/1} on this handle leaves the store running: it is
%% ExESDB.System's to stop.
-spec attach(atom()) -> {ok, store()} | {error, term()}.
attach(StoreId) ->
    ex_esdb_store:attach(StoreId).

%% @doc Close the store. Waits for calls in flight; mutations still queued
%% are answered `{error, closed}', as is every later call. Closing again
%% is a no-op.
-spec close(store()) -> ok.
close(Store) ->
    ex_esdb_store:close(Store).

%% ---- appends ------------------------------------------------------------

%% @equiv append(Store, StreamId, Expected, Events, 10000)
-spec append(store(), binary(), append_expected(), [new_event()]) ->
          {ok, #{version := pos_integer(), position := pos_integer()}}
          | {error, term()}.
append(Store, StreamId, Expected, Events) ->
    append(Store, StreamId, Expected, Events, ?TIMEOUT).

%% @doc Append `Events' to `StreamId' atomically, if the stream is at the
%% `Expected' version: `any', `no_stream' (the stream must not exist),
%% `stream_exists' or an exact version (0: empty or absent).
%%
%% Returns the stream's new version and the global position of the first
%% event. Each event is a map with `event_type' (required), `data' and
%% `metadata' (default `<<>>'), `event_id' (default: a random UUID v4) and
%% `causation_id' / `correlation_id' (default `undefined'); ids are 16
%% raw bytes or UUID text. `data' and `metadata' are stored as bytes and
%% read back as the same bytes, never decoded. A malformed event gives
%% `{error, {invalid_event, Why}}' before anything is sent; an empty stream
%% id or one beginning with `$' (reserved for the store's own streams, as
%% `$all') gives `{error, {invalid_stream_id, StreamId}}'.
%%
%% Appending again events with the same ids at the same expected version
%% (a retry after a lost reply), or with `any' while they are still the
%% stream's last events, writes nothing and returns the original result.
%% Give each event its `event_id' before the first attempt to make that
%% work: a generated id is new at every call. An `any' (or
%% `stream_exists') retry after other appends to the stream is written
%% again unless marked: `Expected' `{retry, any}' (or `{retry, E}' for any
%% E) looks for the events among the stream's last 1,024 versions and
%% answers the original result when they sit there in order (see
%% docs/FORMAT.md, "Retries"; only a marked append pays for the look).
%%
%% `Timeout' bounds the wait for the writer. On expiry the append is
%% withdrawn if the writer has not taken it yet: the call returns
%% `{error, timeout}' and the append is never applied. If the writer has
%% taken it, the call returns `{error, outcome_unknown}': it may or may
%% not be applied, and no late reply comes to the caller. Retrying with the same event ids
%% (give each event its `event_id') is safe either way; see above.
-spec append(store(), binary(), append_expected(), [new_event()], timeout()) ->
          {ok, #{version := pos_integer(), position := pos_integer()}}
          | {error, term()}.
append(Store, StreamId, Expected, Events, Timeout) ->
    checked([stream_id(StreamId), append_expected(Expected),
             {is_list(Events), invalid_events, Events}, timeout_arg(Timeout)],
            fun() ->
                    case check_count(Store, Events) of
                        ok -> append_checked(Store, StreamId, Expected,
                                             Events, Timeout);
                        Error -> Error
                    end
            end).

%% A long list is checked against max_append_events before its events
%% are converted (the NIF checks again; short lists need no look-up).
check_count(Store, Events) when length(Events) > ?CHECKED_COUNT ->
    case ex_esdb_store:limits(Store) of
        {ok, #{max_append_events := Max}} when length(Events) > Max ->
            {error, {limit_exceeded, max_append_events, Max}};
        _ ->
            ok
    end;
check_count(_Store, _Events) ->
    ok.

append_checked(Store, StreamId, Expected, Events, Timeout) ->
    try [nif_event(E) || E <- Events] of
        NifEvents ->
            case ex_esdb_store:submit(
                   Store, {append, StreamId, Expected, NifEvents},
                   Timeout) of
                {ok, Version, Position} ->
                    {ok, #{version => Version, position => Position}};
                Error ->
                    Error
            end
    catch
        throw:{invalid, Why} -> {error, Why}
    end.

%% The NIF's event tuple, or throw {invalid, {invalid_What, Value}} in the
%% Elixir API's words (invalid_event_type, invalid_event_id, ...).
nif_event(#{event_type := Type} = E) when is_binary(Type) ->
    case maps:keys(maps:without(
                     [event_type, data, metadata, event_id, causation_id,
                      correlation_id], E)) of
        [] -> ok;
        [Key | _] -> throw({invalid, {invalid_event, {unknown_key, Key}}})
    end,
    {event_id(E), Type, bin_field(data, E), bin_field(metadata, E),
     opt_id(causation_id, E), opt_id(correlation_id, E)};
nif_event(#{event_type := Type}) ->
    throw({invalid, {invalid_event_type, Type}});
nif_event(E) ->
    throw({invalid, {invalid_event, E}}).

bin_field(Key, E) ->
    case maps:get(Key, E, <<>>) of
        B when is_binary(B) -> B;
        V -> throw({invalid, {invalid(Key), V}})
    end.

invalid(data) -> invalid_data;
invalid(metadata) -> invalid_metadata;
invalid(event_id) -> invalid_event_id;
invalid(causation_id) -> invalid_causation_id;
invalid(correlation_id) -> invalid_correlation_id.

event_id(#{event_id := Id}) -> id(event_id, Id);
event_id(_) -> uuid_v4().

%% The NIF spells "no id" as nil (Elixir's), Erlang users as undefined.
opt_id(Key, E) ->
    case maps:get(Key, E, undefined) of
        undefined -> nil;
        Id -> id(Key, Id)
    end.

id(_Key, <<_:128>> = Raw) ->
    Raw;
id(Key, Text) ->
    case uuid_from_string(Text) of
        {ok, Raw} -> Raw;
        {error, invalid_uuid} -> throw({invalid, {invalid(Key), Text}})
    end.

%% ---- reads --------------------------------------------------------------

%% @doc Read `Count' events of a stream starting at version `From'
%% (inclusive), fewer only when the stream ends. Forward, `From' 0 or 1
%% is the start; backward, any `From' past the last version starts at the
%% last. The events are read page by page (see {@link read_stream_page/5})
%% and returned together: to bound memory with big events, page yourself.
%% Errors: `stream_not_found', `stream_deleted'.
-spec read_stream(store(), binary(), non_neg_integer(), non_neg_integer(),
                  direction()) -> {ok, [event()]} | {error, term()}.
read_stream(Store, StreamId, From, Count, Direction) ->
    checked([stream_id(StreamId), start(From), count(Count),
             direction(Direction)],
            fun() ->
                    read_count(fun(F, N) ->
                                       read_stream_page(Store, StreamId, F, N,
                                                        Direction)
                               end, From, Count)
            end).

%% @doc Read `Count' events of `$all' (every stream, in commit order)
%% starting at global position `From' (inclusive), with the conventions of
%% {@link read_stream/5}.
-spec read_all(store(), non_neg_integer(), non_neg_integer(), direction()) ->
          {ok, [event()]} | {error, term()}.
read_all(Store, From, Count, Direction) ->
    checked([start(From), count(Count), direction(Direction)],
            fun() ->
                    read_count(fun(F, N) ->
                                       read_all_page(Store, F, N, Direction)
                               end, From, Count)
            end).

%% @doc Read `Count' events of type `EventType', forward, from global
%% position `From' (inclusive), fewer only at the end. An unknown type
%% reads as `{ok, []}'.
-spec read_type(store(), binary(), non_neg_integer(), non_neg_integer()) ->
          {ok, [event()]} | {error, term()}.
read_type(Store, EventType, From, Count) ->
    checked([event_type(EventType), start(From), count(Count)],
            fun() ->
                    read_count(fun(F, N) ->
                                       read_type_page(Store, EventType, F, N)
                               end, From, Count)
            end).

%% @doc One page of a stream's events from version `From' (as in
%% {@link read_stream/5}) and where the next page starts. A page holds at
%% most `Count' events (capped at 10,000) and at most the store's
%% `max_read_bytes' (at least one event): it can be short without being
%% the end. `Next' is `eof' at the end, else the `From' of the next page:
%% ```
%% {ok, Events, Next} = ex_esdb:read_stream_page(S, <<"s">>, 1, 1000, forward)
%% '''
-spec read_stream_page(store(), binary(), non_neg_integer(),
                       non_neg_integer(), direction()) ->
          {ok, [event()], next()} | {error, term()}.
read_stream_page(Store, StreamId, From, Count, Direction) ->
    checked([stream_id(StreamId), start(From), count(Count),
             direction(Direction)],
            fun() ->
                    events(ex_esdb_store:read_stream(
                             Store, StreamId, From, page(Count), Direction))
            end).

%% @doc One page of `$all' from global position `From', as
%% {@link read_stream_page/5}; `Next' is a global position or `eof'.
-spec read_all_page(store(), non_neg_integer(), non_neg_integer(),
                    direction()) -> {ok, [event()], next()} | {error, term()}.
read_all_page(Store, From, Count, Direction) ->
    checked([start(From), count(Count), direction(Direction)],
            fun() ->
                    events(ex_esdb_store:read_all(Store, From, page(Count),
                                                    Direction))
            end).

%% @doc One page of the events of a type, forward from global position
%% `From', as {@link read_stream_page/5}; `Next' is the position of the
%% next event of that type or `eof'.
-spec read_type_page(store(), binary(), non_neg_integer(),
                     non_neg_integer()) ->
          {ok, [event()], next()} | {error, term()}.
read_type_page(Store, EventType, From, Count) ->
    checked([event_type(EventType), start(From), count(Count)],
            fun() ->
                    events(ex_esdb_store:read_type(Store, EventType, From,
                                                     page(Count)))
            end).

%% The NIF caps a page at 10,000 events.
page(Count) -> min(Count, 10000).

%% Pages from From until Count events or eof.
read_count(Page, From, Count) ->
    read_count(Page, From, Count, []).

read_count(Page, From, Count, Acc) ->
    case Page(From, min(Count, ?READ_PAGE)) of
        {ok, Events, Next} ->
            Left = Count - length(Events),
            if
                Next =:= eof; Left =< 0 ->
                    {ok, lists:append(lists:reverse(Acc, [Events]))};
                true ->
                    read_count(Page, Next, Left, [Events | Acc])
            end;
        Error ->
            Error
    end.

events({ok, Tuples, Next}) -> {ok, [event(T) || T <- Tuples], Next};
events(Error) -> Error.

event({Position, StreamId, Version, EventId, Type, Data, Metadata,
       Causation, Correlation, CreatedUs}) ->
    #{position => Position, stream_id => StreamId, version => Version,
      event_id => EventId, event_type => Type, data => Data,
      metadata => Metadata, causation_id => undefined_if_nil(Causation),
      correlation_id => undefined_if_nil(Correlation),
      created_us => CreatedUs}.

undefined_if_nil(nil) -> undefined;
undefined_if_nil(Id) -> Id.

%% ---- streams ------------------------------------------------------------

%% @doc The current version of a stream: 0 when it has no events.
%% A deleted stream gives `{error, stream_deleted}'.
-spec stream_version(store(), binary()) ->
          {ok, non_neg_integer()} | {error, term()}.
stream_version(Store, StreamId) ->
    checked([stream_id(StreamId)],
            fun() ->
                    case ex_esdb_store:stream_info(Store, StreamId) of
                        {ok, _, _, true} -> {error, stream_deleted};
                        {ok, Version, _, false} -> {ok, Version};
                        Error -> Error
                    end
            end).

%% @doc Whether a stream has events and is not deleted: `false' for an id
%% that cannot name one (empty, or `$'-prefixed as `$all'), as in the
%% Elixir API. Raises `error:{ex_esdb, Reason}' when the store cannot
%% tell (e.g. `closed').
-spec stream_exists(store(), binary()) -> boolean().
stream_exists(_Store, StreamId) when not is_binary(StreamId) ->
    false;
stream_exists(Store, StreamId) ->
    case ex_esdb_store:stream_info(Store, StreamId) of
        {ok, _, Exists, Deleted} -> Exists andalso not Deleted;
        {error, {invalid_stream_id, _}} -> false;
        {error, Reason} -> erlang:error({ex_esdb, Reason})
    end.

%% @doc The ids of every stream that is not deleted, in listing order: byte
%% order, except that ids longer than 500 bytes sharing their first 500
%% bytes come in a stable but unspecified order among themselves.
-spec streams(store()) -> {ok, [binary()]} | {error, term()}.
streams(Store) ->
    case all_pages(fun(After) -> list_streams(Store, After, ?PAGE) end,
                   stream_id) of
        {ok, Infos} -> {ok, [Id || #{stream_id := Id, deleted := false}
                                       <- Infos]};
        Error -> Error
    end.

%% @doc One page of streams (deleted ones included), in listing order of
%% their ids (see streams/1), strictly after `After' (`undefined': from
%% the first), at most `Count' (capped at 10,000). Resume with the last id
%% returned.
-spec list_streams(store(), binary() | undefined, non_neg_integer()) ->
          {ok, [stream_info()]} | {error, term()}.
list_streams(Store, After, Count) ->
    checked([{After =:= undefined orelse is_binary(After), invalid_stream_id,
              After}, count(Count)],
            fun() ->
                    case ex_esdb_store:list_streams(
                           Store, nil_if_undefined(After), page(Count)) of
                        {ok, Tuples} ->
                            {ok, [#{stream_id => Id, version => V,
                                    deleted => D} || {Id, V, D} <- Tuples]};
                        Error ->
                            Error
                    end
            end).

%% @doc Delete (tombstone) a stream if it is at the `Expected' version:
%% reads and appends then answer `{error, stream_deleted}'. Its events
%% stay in `$all' and in type reads.
-spec delete_stream(store(), binary(), expected()) -> ok | {error, term()}.
delete_stream(Store, StreamId, Expected) ->
    checked([stream_id(StreamId), expected(Expected)],
            fun() ->
                    ex_esdb_store:submit(
                      Store, {delete_stream, StreamId, Expected}, ?TIMEOUT)
            end).

%% ---- snapshots ----------------------------------------------------------

%% @doc Store (or replace) the snapshot of the aggregate `SourceUuid'
%% taken at `SourceVersion'.
-spec put_snapshot(store(), binary(), non_neg_integer(), binary(), binary(),
                   binary()) -> ok | {error, term()}.
put_snapshot(Store, SourceUuid, SourceVersion, SourceType, Data, Metadata) ->
    checked([source_uuid(SourceUuid),
             {u64(SourceVersion), invalid_source_version, SourceVersion},
             {is_binary(SourceType), invalid_source_type, SourceType},
             {is_binary(Data), invalid_data, Data},
             {is_binary(Metadata), invalid_metadata, Metadata}],
            fun() ->
                    ex_esdb_store:submit(
                      Store, {snapshot_put, SourceUuid, SourceVersion,
                              SourceType, Data, Metadata}, ?TIMEOUT)
            end).

%% @doc The snapshot of `SourceUuid', or `{error, snapshot_not_found}'
%% (the word the Elixir API and Commanded use).
-spec get_snapshot(store(), binary()) -> {ok, snapshot()} | {error, term()}.
get_snapshot(Store, SourceUuid) ->
    checked([source_uuid(SourceUuid)], fun() -> snapshot(Store, SourceUuid) end).

snapshot(Store, SourceUuid) ->
    case ex_esdb_store:snapshot_get(Store, SourceUuid) of
        {ok, {Uuid, Version, Type, Data, Metadata, CreatedUs}} ->
            {ok, #{source_uuid => Uuid, source_version => Version,
                   source_type => Type, data => bytes(Data),
                   metadata => bytes(Metadata), created_us => CreatedUs}};
        Error ->
            Error
    end.

%% This API reads and writes bytes: a payload the Elixir API wrote as a
%% term (`{term, Bytes}' from the NIF), or one stored before encodings
%% were recorded (`{legacy, Bytes}'), is handed out as its bytes, never
%% decoded.
bytes({term, Bytes}) -> Bytes;
bytes({legacy, Bytes}) -> Bytes;
bytes(Bytes) -> Bytes.

%% @doc Delete the snapshot of `SourceUuid'; `ok' when there is none as
%% well (deleting is idempotent, as in the Elixir API).
-spec delete_snapshot(store(), binary()) -> ok | {error, term()}.
delete_snapshot(Store, SourceUuid) ->
    checked([source_uuid(SourceUuid)],
            fun() ->
                    case ex_esdb_store:submit(
                           Store, {snapshot_delete, SourceUuid}, ?TIMEOUT) of
                        {error, snapshot_not_found} -> ok;
                        Other -> Other
                    end
            end).

%% ---- subscription checkpoints -------------------------------------------

%% @doc Store (or replace) the checkpoint `Name': a subscription's last
%% acknowledged position and an opaque `Definition' it owns.
-spec put_checkpoint(store(), binary(), non_neg_integer(), binary()) ->
          ok | {error, term()}.
put_checkpoint(Store, Name, Checkpoint, Definition) ->
    checked([name(Name), {u64(Checkpoint), invalid_checkpoint, Checkpoint},
             {is_binary(Definition), invalid_definition, Definition}],
            fun() ->
                    ex_esdb_store:submit(
                      Store, {checkpoint_put, Name, Checkpoint, Definition},
                      ?TIMEOUT)
            end).

%% @doc The checkpoint `Name', or `{error, subscription_not_found}' (the
%% word the Elixir API and Commanded use).
-spec get_checkpoint(store(), binary()) ->
          {ok, checkpoint()} | {error, term()}.
get_checkpoint(Store, Name) ->
    checked([name(Name)],
            fun() ->
                    case ex_esdb_store:checkpoint_get(Store, Name) of
                        {ok, Tuple} -> {ok, checkpoint(Tuple)};
                        Error -> Error
                    end
            end).

%% @doc Delete the checkpoint `Name'; `{error, subscription_not_found}'
%% when absent.
-spec delete_checkpoint(store(), binary()) -> ok | {error, term()}.
delete_checkpoint(Store, Name) ->
    checked([name(Name)],
            fun() ->
                    ex_esdb_store:submit(Store, {checkpoint_delete, Name},
                                           ?TIMEOUT)
            end).

%% @doc Every checkpoint, in listing order of their names (see streams/1).
-spec checkpoints(store()) -> {ok, [checkpoint()]} | {error, term()}.
checkpoints(Store) ->
    all_pages(fun(After) ->
                      case ex_esdb_store:checkpoint_list(
                             Store, nil_if_undefined(After), ?PAGE) of
                          {ok, Tuples} -> {ok, [checkpoint(T) || T <- Tuples]};
                          Error -> Error
                      end
              end,
              name).

checkpoint({Name, Checkpoint, Definition, UpdatedUs}) ->
    #{name => Name, checkpoint => Checkpoint, definition => Definition,
      updated_us => UpdatedUs}.

%% Call Page(After) from the start until a short page; each item's Key is
%% the next cursor.
all_pages(Page, Key) ->
    all_pages(Page, Key, undefined, []).

all_pages(Page, Key, After, Acc) ->
    case Page(After) of
        {ok, Items} when length(Items) < ?PAGE ->
            {ok, lists:append(lists:reverse(Acc, [Items]))};
        {ok, Items} ->
            Next = maps:get(Key, lists:last(Items)),
            all_pages(Page, Key, Next, [Items | Acc]);
        Error ->
            Error
    end.

nil_if_undefined(undefined) -> nil;
nil_if_undefined(After) -> After.

%% ---- transient subscriptions ---------------------------------------------

%% @doc Send `Pid' (default: the caller) every event committed from now on
%% that `Source' matches: `all', `{stream, StreamId}' or `{type, Type}'.
%% Events come in messages `{events, [Event]}' (at most 256 a message, in
%% commit order), each `Event' a map with the keys `position',
%% `stream_id', `event_number' (its stream version), `stream_version',
%% `event_type', `data' and `metadata' (bytes as stored), `event_id',
%% `causation_id' and `correlation_id' (UUID text or `nil'),
%% `created_epoch' (microseconds since the epoch), `created_at' and
%% `''__struct__'' => ex_esdb_event'. The subscription ends with
%% {@link unsubscribe/2} or when `Pid' exits; a `Pid' that is not alive
%% when it subscribes is `{error, noproc}'. Events written before it
%% began are read with {@link read_all/4} and the like; persistent
%% (checkpointed) subscriptions are Elixir's `ExESDB.Subscriptions'.
%%
%% Flow control, as in `ExESDB.Subscriptions': `Pid' may be sent
%% `credit' events (option of subscribe/4, default 10000, or `infinity')
%% before it grants more with {@link grant/3}; a commit past its credit
%% ends the subscription with `{subscription_overflow, Sub,
%% FirstDroppedPosition}', and closing the store sends
%% `{subscription_down, Sub, closed}'. Another key in `Opts' gives
%% `{error, {invalid_option, Key}}'.
-spec subscribe(store(), all | {stream, binary()} | {type, binary()}) ->
          {ok, term()} | {error, term()}.
subscribe(Store, Source) ->
    subscribe(Store, Source, self()).

-spec subscribe(store(), all | {stream, binary()} | {type, binary()}, pid()) ->
          {ok, term()} | {error, term()}.
subscribe(Store, Source, Pid) ->
    subscribe(Store, Source, Pid, #{}).

-spec subscribe(store(), all | {stream, binary()} | {type, binary()}, pid(),
                #{credit => pos_integer() | infinity}) ->
          {ok, term()} | {error, term()}.
subscribe(Store, Source, Pid, Opts) ->
    Credit = maps:get(credit, Opts, 10000),
    Unknown = maps:keys(maps:without([credit], Opts)),
    case {valid_source(Source), is_pid(Pid), valid_credit(Credit), Unknown} of
        {false, _, _, _} -> {error, {invalid_source, Source}};
        {_, false, _, _} -> {error, {invalid_subscriber, Pid}};
        {_, _, false, _} -> {error, {invalid_credit, Credit}};
        %% as open/2 does: a misspelt option is not taken for the default
        {_, _, _, [Key | _]} -> {error, {invalid_option, Key}};
        _ ->
            case ex_esdb_store:subscribe(Store, Pid, Source,
                                           {ex_esdb_event, false}, false,
                                           Credit) of
                {ok, Member, _Last} -> {ok, {transient, Member}};
                Error -> Error
            end
    end.

%% @doc Let a subscription send `N' more events: call it after handling
%% `N' of them. `{error, subscription_not_found}' once the subscription
%% ended.
-spec grant(store(), term(), pos_integer()) -> ok | {error, term()}.
grant(Store, {transient, Member}, N) when is_integer(Member) ->
    case valid_credit(N) andalso N =/= infinity of
        true -> ex_esdb_store:grant(Store, Member, N);
        false -> {error, {invalid_credit, N}}
    end;
grant(_Store, Sub, _N) ->
    {error, {invalid_subscription, Sub}}.

%% @doc End a subscription made by {@link subscribe/3};
%% `{error, subscription_not_found}' once it ended.
-spec unsubscribe(store(), term()) -> ok | {error, term()}.
unsubscribe(Store, {transient, Member}) when is_integer(Member) ->
    ex_esdb_store:unsubscribe(Store, Member);
unsubscribe(_Store, Sub) ->
    {error, {invalid_subscription, Sub}}.

valid_credit(infinity) -> true;
valid_credit(N) -> is_integer(N) andalso N > 0.

valid_source(all) -> true;
valid_source({stream, Id}) -> is_binary(Id) andalso Id =/= <<>>;
valid_source({type, T}) -> is_binary(T) andalso T =/= <<>>;
valid_source(_) -> false.

%% ---- maintenance --------------------------------------------------------

%% @doc Counters: `events' (= the last global position), `streams',
%% `event_types', `snapshots', `checkpoints', `bytes_used', `map_size' and
%% `commits' (write transactions since open), `subscribers' (subscriber
%% group memberships held now; a dead subscriber's goes when the store sees
%% it die); and `store_failed': `nil', or
%% the cause (e.g. `io_error') once a failed flush stopped the store: from
%% then on every write answers `{error, {store_failed, Cause}}', reads go
%% on, and the next open verifies the store before it takes writes
%% (README, "Durability").
-spec stats(store()) -> {ok, #{atom() => non_neg_integer() | atom()}} | {error, term()}.
stats(Store) ->
    ex_esdb_store:stats(Store).

%% @doc The limits the store checks commands against (the stored ones):
%% `max_stream_id', `max_event_type', `max_event_bytes',
%% `max_append_events', `max_append_bytes' and `max_key'.
-spec limits(store()) -> {ok, #{atom() => pos_integer()}} | {error, term()}.
limits(Store) ->
    ex_esdb_store:limits(Store).

%% @doc Check every record's checksum and that every index agrees with the
%% events: `ok', or `{error, {corrupt, Problems}}' with their count. The
%% checks run in a child process of the VM over a read of this one: a
%% page so damaged that LMDB faults on it ends the child, counts as a
%% problem and never takes the VM down. It runs on a thread of its own,
%% not on a scheduler; the caller waits.
-spec verify(store()) -> ok | {error, term()}.
verify(Store) ->
    ex_esdb_store:verify(Store).

%% @doc Write a consistent, compacted copy of the store into directory
%% `Dest' (absent or empty) while writers go on. The copy opens as a store.
%% It runs on a thread of its own, not on a scheduler; the caller waits.
-spec backup(store(), string() | binary()) -> ok | {error, term()}.
backup(Store, Dest) ->
    checked([path_arg(Dest)],
            fun() -> ex_esdb_store:backup(Store, path(Dest)) end).

%% The NIF takes paths as binaries; strings are encoded as UTF-8.
path(Path) when is_binary(Path) -> Path;
path(Path) -> unicode:characters_to_binary(Path).

%% ---- argument checks ----------------------------------------------------

%% Fun(), when every check holds; else {error, {invalid_What, Value}} for
%% the first that does not: the Elixir API's answer to the same mistake
%% (DESIGN's error vocabulary), never an exception.
checked([], Fun) -> Fun();
checked([{true, _, _} | Rest], Fun) -> checked(Rest, Fun);
checked([{false, What, Value} | _], _Fun) -> {error, {What, Value}}.

stream_id(Id) -> {is_binary(Id), invalid_stream_id, Id}.
event_type(Type) -> {is_binary(Type), invalid_event_type, Type}.
start(From) -> {u64(From), invalid_start, From}.
count(N) -> {is_integer(N) andalso N >= 0, invalid_count, N}.
direction(D) -> {D =:= forward orelse D =:= backward, invalid_direction, D}.
source_uuid(U) -> {is_binary(U) andalso U =/= <<>>, invalid_source_uuid, U}.
%% A checkpoint is a subscription's: its name is the subscription's.
%% Names starting `ex_esdb:' are the store's own (a cluster's member
%% records, its barrier): refused as the Elixir API refuses them, so that
%% no caller forges or deletes one.
name(<<"ex_esdb:", _/binary>> = Name) -> {false, invalid_subscription_name, Name};
name(Name) -> {is_binary(Name), invalid_subscription_name, Name}.

expected(E) ->
    {lists:member(E, [any, no_stream, stream_exists]) orelse u64(E),
     invalid_expected_version, E}.

%% An append's Expected may be marked {retry, Expected} (see append/5).
append_expected({retry, E} = R) ->
    {element(1, expected(E)), invalid_expected_version, R};
append_expected(E) ->
    expected(E).

%% What `receive ... after' takes.
timeout_arg(T) ->
    {T =:= infinity orelse (is_integer(T) andalso T >= 0 andalso T < 1 bsl 32),
     invalid_timeout, T}.

path_arg(P) ->
    {is_binary(P) orelse (is_list(P) andalso is_binary(catch path(P))),
     invalid_path, P}.

u64(N) -> is_integer(N) andalso N >= 0 andalso N < 1 bsl 64.

%% @doc How long (ms) a mutation waits for the writer's reply unless told
%% otherwise: the same default as the Elixir API's `timeout' option.
-spec default_timeout() -> pos_integer().
default_timeout() ->
    ?TIMEOUT.

%% ---- UUIDs --------------------------------------------------------------

%% @doc A random (version 4, RFC 4122 variant) UUID as 16 bytes.
-spec uuid_v4() -> uuid().
uuid_v4() ->
    <<A:48, _:4, B:12, _:2, C:62>> = crypto:strong_rand_bytes(16),
    <<A:48, 4:4, B:12, 2:2, C:62>>.

%% @doc The canonical text of a 16-byte UUID:
%% `<<"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx">>', lowercase.
-spec uuid_to_string(uuid()) -> binary().
uuid_to_string(<<A:4/binary, B:2/binary, C:2/binary, D:2/binary,
                 E:6/binary>>) ->
    iolist_to_binary(lists:join($-, [hex(X) || X <- [A, B, C, D, E]])).

hex(Bin) ->
    << <<(binary:at(<<"0123456789abcdef">>, N))>> || <<N:4>> <= Bin >>.

%% @doc Parse UUID text (binary or string, either case) to its 16 bytes.
-spec uuid_from_string(binary() | string()) ->
          {ok, uuid()} | {error, invalid_uuid}.
uuid_from_string(Text) when is_list(Text) ->
    try list_to_binary(Text) of
        Bin -> uuid_from_string(Bin)
    catch
        error:badarg -> {error, invalid_uuid}
    end;
uuid_from_string(<<A:8/binary, $-, B:4/binary, $-, C:4/binary, $-,
                   D:4/binary, $-, E:12/binary>>) ->
    try binary:decode_hex(<<A/binary, B/binary, C/binary, D/binary,
                            E/binary>>) of
        Raw -> {ok, Raw}
    catch
        error:badarg -> {error, invalid_uuid}
    end;
uuid_from_string(_) ->
    {error, invalid_uuid}.
