%% @doc The store a handle of the Erlang API (`ex_esdb') names: a store
%% this API opened itself (a NIF reference, {@link ex_esdb:open/2}), or one
%% that `ExESDB.System' runs in this VM, single-node or cluster mode
%% ({@link ex_esdb:attach/1}). Each function is `ex_esdb_backend''s of the
%% same name. On an attached store reads and subscriptions are this node's
%% replica's, and mutations go through the store's own `ExESDB.Backend':
%% in cluster mode the gateway, which routes them to the leader, retries
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
    case on(Handle, fun(_Ref) -> ok end) of
        ok -> {ok, Handle};
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

limits(S) -> on(S, fun(R) -> ex_esdb_backend:limits(R) end).
stats(S) -> on(S, fun(R) -> ex_esdb_backend:stats(R) end).
verify(S) -> on(S, fun(R) -> ex_esdb_backend:verify(R) end).
backup(S, Dest) -> on(S, fun(R) -> ex_esdb_backend:backup(R, Dest) end).

read_stream(S, Id, From, N, Dir) ->
    on(S, fun(R) -> ex_esdb_backend:read_stream(R, Id, From, N, Dir) end).
read_all(S, From, N, Dir) ->
    on(S, fun(R) -> ex_esdb_backend:read_all(R, From, N, Dir) end).
read_type(S, Type, From, N) ->
    on(S, fun(R) -> ex_esdb_backend:read_type(R, Type, From, N) end).
stream_info(S, Id) ->
    on(S, fun(R) -> ex_esdb_backend:stream_info(R, Id) end).
list_streams(S, After, N) ->
    on(S, fun(R) -> ex_esdb_backend:list_streams(R, After, N) end).
snapshot_get(S, Uuid) ->
    on(S, fun(R) -> ex_esdb_backend:snapshot_get(R, Uuid) end).
checkpoint_get(S, Name) ->
    on(S, fun(R) -> ex_esdb_backend:checkpoint_get(R, Name) end).
checkpoint_list(S, After, N) ->
    on(S, fun(R) -> ex_esdb_backend:checkpoint_list(R, After, N) end).
subscribe(S, Pid, Source, Shape, Direct, Credit) ->
    on(S, fun(R) ->
                  ex_esdb_backend:subscribe(R, Pid, Source, Shape, Direct,
                                            Credit)
          end).
grant(S, Member, N) -> on(S, fun(R) -> ex_esdb_backend:grant(R, Member, N) end).
unsubscribe(S, Member) ->
    on(S, fun(R) -> ex_esdb_backend:unsubscribe(R, Member) end).

%% Fun(Ref) on this node's store (its replica in cluster mode). A store
%% this VM holds no NIF reference of (the C node backend's) is not
%% attachable yet.
on({ex_esdb_attached, Id}, Fun) ->
    case fetch(Id) of
        {ok, #{handle := #{ref := Ref}}} when is_reference(Ref) -> Fun(Ref);
        {ok, #{handle := Ref}} when is_reference(Ref) -> Fun(Ref);
        {ok, #{backend := Backend}} -> {error, {unsupported_backend, Backend}};
        Error -> Error
    end;
on(Ref, Fun) ->
    Fun(Ref).

fetch(Id) ->
    Store = ?STORE,
    try
        Store:fetch(Id)
    catch
        error:undef -> {error, store_not_started}
    end.
