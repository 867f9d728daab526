%% @doc The store a handle of the Erlang API (`ex_esdb') names: a store
%% this API opened itself (a NIF reference, {@link ex_esdb:open/2}), or one
%% that `ExESDB.System' runs in this VM, single-node, cluster mode or on a
%% C node ({@link ex_esdb:attach/1}). Each function is `ex_esdb_backend''s
%% of the same name, with its answers. On an attached store that holds a
%% NIF reference here reads and subscriptions are this node's replica's;
%% on one that holds none (`backend: cnode') every call goes through the
%% store's own `ExESDB.Backend' (the behaviour's callbacks, with the
%% backend's errors) and its answers are put in `ex_esdb_backend''s forms.
%% Mutations go through the store's `ExESDB.Backend' either way: in
%% cluster mode the gateway, which routes them to the leader, retries
%% them on a leadership change and answers once this node's replica has
%% applied them (`ExESDB.Cluster', docs/CLUSTER.md). An attached store
%% that is not running answers `{error, store_not_started}'.
-module(ex_esdb_store).

-export([attach/1, close/1, submit/3, limits/1, stats/1,
         read_stream/5, read_all/4, read_type/4, stream_info/2,
         list_streams/3, snapshot_get/2, checkpoint_get/2, checkpoint_list/3,
         subscribe/6, grant/3, unsubscribe/2, verify/1, backup/2]).

%% The Elixir shell's registry of running stores. Called through a
%% variable: an Erlang-only build (rebar3) has no Elixir modules and
%% attaches to nothing.
-define(STORE, 'Elixir.ExESDB.Store').

-spec attach(atom()) -> {ok, {ex_esdb_attached, atom()}} | {error, term()}.
attach(StoreId) when is_atom(StoreId) ->
    Handle = {ex_esdb_attached, StoreId},
    case fetch(StoreId) of
        {ok, _} -> {ok, Handle};
        Error -> Error
    end;
attach(StoreId) ->
    {error, {invalid_store_id, StoreId}}.

%% An attached store is ExESDB.System's to stop: closing the handle
%% leaves it running.
close({ex_esdb_attached, _}) -> ok;
close(Ref) -> ex_esdb_backend:close(Ref).

submit({ex_esdb_attached, Id}, Command, Timeout) ->
    case fetch(Id) of
        {ok, #{backend := Backend} = S} ->
            Backend:submit(S#{timeout => Timeout}, Command, []);
        Error ->
            Error
    end;
submit(Ref, Command, Timeout) ->
    ex_esdb_backend:submit(Ref, Command, Timeout).

limits(S) -> on(S, limits, []).
stats(S) -> on(S, stats, []).
verify(S) -> on(S, verify, []).
backup(S, Dest) -> on(S, backup, [Dest]).

read_stream(S, Id, From, N, Dir) -> on(S, read_stream, [Id, From, N, Dir]).
read_all(S, From, N, Dir) -> on(S, read_all, [From, N, Dir]).
read_type(S, Type, From, N) -> on(S, read_type, [Type, From, N]).
stream_info(S, Id) -> on(S, stream_info, [Id]).
list_streams(S, After, N) -> on(S, list_streams, [After, N]).
snapshot_get(S, Uuid) -> on(S, snapshot_get, [Uuid]).
checkpoint_get(S, Name) -> on(S, checkpoint_get, [Name]).
checkpoint_list(S, After, N) -> on(S, checkpoint_list, [After, N]).
subscribe(S, Pid, Source, Format, Tagged, Credit) ->
    on(S, subscribe, [Pid, Source, Format, Tagged, Credit]).
grant(S, Member, N) -> on(S, grant, [Member, N]).
unsubscribe(S, Member) -> on(S, unsubscribe, [Member]).

%% ex_esdb_backend:Op(Ref, Args...) on this node's store (its replica in
%% cluster mode), or the store's backend's callback for Op when this VM
%% holds no NIF reference of it (backend/4).
on({ex_esdb_attached, Id}, Op, Args) ->
    case fetch(Id) of
        {ok, #{handle := #{ref := Ref}}} when is_reference(Ref) ->
            apply(ex_esdb_backend, Op, [Ref | Args]);
        {ok, #{handle := Ref}} when is_reference(Ref) ->
            apply(ex_esdb_backend, Op, [Ref | Args]);
        {ok, #{backend := Backend} = S} ->
            backend(Backend, S, Op, Args);
        Error ->
            Error
    end;
on(Ref, Op, Args) ->
    apply(ex_esdb_backend, Op, [Ref | Args]).

%% Op through the ExESDB.Backend callbacks, answered in ex_esdb_backend's
%% forms: events as EventTuples (read with `decode: false', the stored
%% bytes), subscriptions delivering records of Format.
backend(B, S, limits, []) -> B:limits(maps:get(handle, S));
backend(B, S, stats, []) -> B:stats(S);
backend(B, S, verify, []) -> B:verify(S);
backend(B, S, backup, [Dest]) -> B:backup(S, Dest);
backend(B, S, read_stream, [Id, From, N, Dir]) ->
    tuples(B:read(S, {stream, Id}, From, N, Dir, [{decode, false}]));
backend(B, S, read_all, [From, N, Dir]) ->
    tuples(B:read(S, all, From, N, Dir, [{decode, false}]));
backend(B, S, read_type, [Type, From, N]) ->
    tuples(B:read(S, {type, Type}, From, N, forward, [{decode, false}]));
backend(B, S, stream_info, [Id]) -> B:stream_info(S, Id);
backend(B, S, list_streams, [After, N]) -> B:list_streams(S, After, N);
backend(B, S, snapshot_get, [Uuid]) -> B:snapshot_get(S, Uuid);
backend(B, S, checkpoint_get, [Name]) -> B:checkpoint_get(S, Name);
backend(B, S, checkpoint_list, [After, N]) -> B:checkpoint_list(S, After, N);
backend(B, S, subscribe, [Pid, Source, Format, Tagged, Credit]) ->
    Shape = case Tagged of
                false -> plain;
                true -> tagged;
                ranged -> ranged
            end,
    B:subscribe(S, Pid, Source,
                [{shape, Shape}, {credit, Credit}, {format, Format}]);
backend(B, S, grant, [Member, N]) -> B:grant(S, Member, N);
backend(B, S, unsubscribe, [Member]) -> B:unsubscribe(S, Member).

%% Records (ExESDB.EventRecord's fields) as ex_esdb_backend's EventTuples:
%% ids as 16 bytes (the records hold UUID text), nil when absent.
tuples({ok, Records, Next}) -> {ok, [tuple(R) || R <- Records], Next};
tuples(Error) -> Error.

tuple(#{position := P, stream_id := S, event_number := V, event_id := Id,
        event_type := T, data := D, metadata := M, causation_id := C,
        correlation_id := R, created_epoch := Us}) ->
    {P, S, V, raw_id(Id), T, D, M, raw_id(C), raw_id(R), Us}.

raw_id(nil) -> nil;
raw_id(Text) ->
    {ok, Raw} = ex_esdb:uuid_from_string(Text),
    Raw.

fetch(Id) ->
    Store = ?STORE,
    try
        Store:fetch(Id)
    catch
        error:undef -> {error, store_not_started}
    end.
