%% @doc The store in this VM, through the NIF: the one module that calls
%% `ex_esdb_nif'. The Erlang API (`ex_esdb') and the Elixir shell
%% (`ExESDB.Backend.NIF', the `ExESDB.Backend' in this VM) both sit on it,
%% so the two APIs share one `{Ref, Reply}' wait and one naming of core
%% errors. Arguments are the NIF's: checked by the callers.
%%
%% Mutations are commands given to {@link submit/3}:
%% `{append, StreamId, Expected, Events}' (answers `{ok, Version,
%% Position}'), `{delete_stream, StreamId, Expected}', `{snapshot_put,
%% SourceUuid, Version, Type, Data, Metadata}', `{snapshot_delete,
%% SourceUuid}', `{checkpoint_put, Name, Checkpoint, Definition}' and
%% `{checkpoint_delete, Name}' (each answers `ok'). A put or delete may
%% come as `{request, Id, Retry, Command}' (Id 16 bytes, the same in every
%% try of one call; Retry true on a resubmission): a retry whose first try
%% the store applied is answered `ok' and not applied again (the cluster
%% gateway's; docs/FORMAT.md, "Retries").
%%
%% "Not found" is named for what was looked up ({@link translate/2}):
%% `snapshot_not_found' for snapshots, `subscription_not_found' for
%% checkpoints and subscription members.
-module(ex_esdb_backend).

-export([open/2, close/1, limits/1, stats/1, cluster_support/0,
         cluster_open/3, cluster_info/1, cluster_members/1, cluster_install_copy/2, cluster_transfer/2,
         cluster_add/3, cluster_assign/3, cluster_remove/2,
         submit/3, submit_async/3, call/3, translate/2,
         read_stream/5, read_all/4, read_type/4, read_records/6, read_page/5, page_records/2, stream_info/2, list_streams/3,
         snapshot_get/2, checkpoint_get/2, checkpoint_list/3,
         subscribe/6, grant/3, unsubscribe/2,
         verify/1, backup/2, decode_term/1]).

-export_type([command/0]).

-type handle() :: reference().
-type command() :: {append, binary(), term(), [tuple()]}
                 | {delete_stream, binary(), term()}
                 | {snapshot_put, binary(), non_neg_integer(), binary(),
                    term(), term()}
                 | {snapshot_delete, binary()}
                 | {checkpoint_put, binary(), non_neg_integer(), binary()}
                 | {checkpoint_delete, binary()}
                 | {request, <<_:128>>, boolean(), command()}.

%% ---- life cycle and counters ---------------------------------------------

-spec open(binary(), map()) -> {ok, handle()} | {error, term()}.
open(Path, Opts) -> ex_esdb_nif:open(Path, Opts).

-spec close(handle()) -> ok.
close(H) -> ex_esdb_nif:close(H).

-spec limits(handle()) -> {ok, map()} | {error, term()}.
limits(H) -> ex_esdb_nif:limits(H).

-spec stats(handle()) -> {ok, map()} | {error, term()}.
stats(H) -> ex_esdb_nif:stats(H).

%% @doc Whether this build can run cluster mode: `true', or `{false, Why}'
%% naming what is missing (raft is built by `make raft').
-spec cluster_support() -> true | {false, binary()}.
cluster_support() -> ex_esdb_nif:cluster_support().

%% ---- cluster mode (docs/PROTOCOL.md, cluster_open/3) -----------------------

%% @doc Open a store as a raft replica: open/2's options and the cluster
%% map (id, address, bind_address, members, election_timeout_ms,
%% heartbeat_ms, notify). Its mutations answer `{error, not_leader}' on a
%% node that is not the leader.
-spec cluster_open(binary(), map(), map()) -> {ok, handle()} | {error, term()}.
cluster_open(Path, Opts, Cluster) -> ex_esdb_nif:cluster_open(Path, Opts, Cluster).

%% @doc `#{id, leader_id, leader_address, leader, applied, failure}'.
-spec cluster_info(handle()) -> {ok, map()} | {error, term()}.
cluster_info(H) -> ex_esdb_nif:cluster_info(H).

%% @doc The members of the latest raft configuration this node knows:
%% `[{Id, Address, voter | standby | spare}]'.
-spec cluster_members(handle()) -> {ok, [tuple()]} | {error, term()}.
cluster_members(H) -> ex_esdb_nif:cluster_members(H).

%% @doc Replace the store by a copy of a member's store (the file at
%% `Path'), which its replica takes only while it waits for one
%% (`needs_copy' in cluster_info/1).
-spec cluster_install_copy(handle(), binary()) -> ok | {error, term()}.
cluster_install_copy(H, Path) -> ex_esdb_nif:cluster_install_copy(H, Path).

-spec cluster_transfer(handle(), non_neg_integer()) -> ok | {error, term()}.
cluster_transfer(H, Id) -> ex_esdb_nif:cluster_transfer(H, Id).

-spec cluster_add(handle(), pos_integer(), binary()) -> ok | {error, term()}.
cluster_add(H, Id, Address) -> ex_esdb_nif:cluster_add(H, Id, Address).

-spec cluster_assign(handle(), pos_integer(), voter | standby | spare) ->
          ok | {error, term()}.
cluster_assign(H, Id, Role) -> ex_esdb_nif:cluster_assign(H, Id, Role).

-spec cluster_remove(handle(), pos_integer()) -> ok | {error, term()}.
cluster_remove(H, Id) -> ex_esdb_nif:cluster_remove(H, Id).

%% ---- mutations -----------------------------------------------------------

%% @doc Apply a command, waiting `Timeout' for the writer's reply. On
%% expiry a command still queued is withdrawn: `{error, timeout}', never
%% applied; one the writer has taken gives `{error, outcome_unknown}' (it
%% may be applied) and its reply never reaches the caller.
-spec submit(handle(), command(), timeout()) -> term().
submit(H, Command, Timeout) ->
    translate(op(Command),
              call(fun(Ref) -> queue(H, Ref, Command) end, Timeout,
                   fun(Ref) -> ex_esdb_nif:cancel(H, Ref) end)).

%% @doc Queue a command and return at once: `ok', or the error that
%% refused it. The reply comes later to the caller as `{Ref, Reply}'.
-spec submit_async(handle(), command(), reference()) -> ok | {error, term()}.
submit_async(H, Command, Ref) ->
    translate(op(Command), queue(H, Ref, Command)).

op({request, _Id, _Retry, Command}) -> element(1, Command);
op(Command) -> element(1, Command).

queue(H, Ref, {append, StreamId, Expected, Events}) ->
    ex_esdb_nif:append(H, Ref, StreamId, Expected, Events);
queue(H, Ref, {delete_stream, StreamId, Expected}) ->
    ex_esdb_nif:delete_stream(H, Ref, StreamId, Expected);
queue(H, Ref, {snapshot_put, Uuid, Version, Type, Data, Metadata}) ->
    ex_esdb_nif:snapshot_put(H, Ref, Uuid, Version, Type, Data, Metadata);
queue(H, Ref, {snapshot_delete, Uuid}) ->
    ex_esdb_nif:snapshot_delete(H, Ref, Uuid);
queue(H, Ref, {checkpoint_put, Name, Checkpoint, Definition}) ->
    ex_esdb_nif:checkpoint_put(H, Ref, Name, Checkpoint, Definition);
queue(H, Ref, {checkpoint_delete, Name}) ->
    ex_esdb_nif:checkpoint_delete(H, Ref, Name);
queue(H, Ref, {request, Id, Retry, Command}) ->
    request(H, Ref, {Id, Retry}, Command).

%% A put or delete with a request id (the cluster gateway's; the store
%% does not apply a retry again whose first try it applied).
request(H, Ref, R, {snapshot_put, Uuid, Version, Type, Data, Metadata}) ->
    ex_esdb_nif:snapshot_put(H, Ref, Uuid, Version, Type, Data, Metadata, R);
request(H, Ref, R, {snapshot_delete, Uuid}) ->
    ex_esdb_nif:snapshot_delete(H, Ref, Uuid, R);
request(H, Ref, R, {checkpoint_put, Name, Checkpoint, Definition}) ->
    ex_esdb_nif:checkpoint_put(H, Ref, Name, Checkpoint, Definition, R);
request(H, Ref, R, {checkpoint_delete, Name}) ->
    ex_esdb_nif:checkpoint_delete(H, Ref, Name, R).

%% @doc The `{Ref, Reply}' wait of this binding (the C node backend's,
%% over distribution, is `ExESDB.Backend.CNode.await_reply/3'): `Queue(Ref)' sends a
%% command tagged with a fresh reference (`ok', or the error that refused
%% it at once); the reply comes as `{Ref, Reply}'. After `Timeout',
%% `Cancel(Ref)' gives the command up: `ok' (withdrawn from the queue)
%% answers `{error, timeout}'; `abandoned' (the writer has it, its reply
%% will not be sent) answers `{error, outcome_unknown}'; `not_queued'
%% (the reply was sent or is being sent) answers the reply.
-spec call(fun((reference()) -> ok | {error, term()}), timeout(),
           fun((reference()) -> ok | abandoned | not_queued)) -> term().
call(Queue, Timeout, Cancel) ->
    Ref = make_ref(),
    case Queue(Ref) of
        ok -> wait(Ref, Timeout, Cancel);
        {error, _} = Error -> Error
    end.

%% (the compiler keeps its receive marker: the mailbox is searched only
%% from where Ref was made)
wait(Ref, Timeout, Cancel) ->
    receive
        {Ref, Reply} -> Reply
    after Timeout ->
        case Cancel(Ref) of
            ok -> {error, timeout};
            abandoned -> {error, outcome_unknown};
            not_queued -> wait(Ref, infinity, Cancel)
        end
    end.

%% @doc The reply of operation `Op' as both APIs word it: the core says
%% `not_found' for anything absent; callers are told what was absent.
-spec translate(atom(), term()) -> term().
translate(Op, {error, not_found}) -> {error, not_found(Op)};
translate(_Op, Reply) -> Reply.

not_found(snapshot_get) -> snapshot_not_found;
not_found(snapshot_delete) -> snapshot_not_found;
not_found(checkpoint_get) -> subscription_not_found;
not_found(checkpoint_delete) -> subscription_not_found;
not_found(grant) -> subscription_not_found;
not_found(unsubscribe) -> subscription_not_found;
not_found(_Op) -> not_found.

%% ---- reads ---------------------------------------------------------------

%% @doc One page of events as tuples (the Erlang API's form), and where
%% the next page starts.
-spec read_stream(handle(), binary(), non_neg_integer(), non_neg_integer(),
                  forward | backward) ->
          {ok, [tuple()], eof | pos_integer()} | {error, term()}.
read_stream(H, StreamId, From, Count, Direction) ->
    ex_esdb_nif:read_stream(H, StreamId, From, Count, Direction).

-spec read_all(handle(), non_neg_integer(), non_neg_integer(),
               forward | backward) ->
          {ok, [tuple()], eof | pos_integer()} | {error, term()}.
read_all(H, From, Count, Direction) ->
    ex_esdb_nif:read_all(H, From, Count, Direction).

-spec read_type(handle(), binary(), non_neg_integer(), non_neg_integer()) ->
          {ok, [tuple()], eof | pos_integer()} | {error, term()}.
read_type(H, Type, From, Count) ->
    ex_esdb_nif:read_type(H, Type, From, Count).

%% @doc One page of events as records of `Format' (`{Module, Decode}').
-spec read_records(handle(), term(), non_neg_integer(), non_neg_integer(),
                   forward | backward, {module(), boolean()}) ->
          {ok, list(), term()} | {error, term()}.
read_records(H, Source, From, Count, Direction, Format) ->
    ex_esdb_nif:read_records(H, Source, From, Count, Direction, Format).

%% A read in two halves, for a read-ahead: the events copied out of the
%% store (dirty IO), then their records built on the caller's scheduler.
-spec read_page(handle(), term(), non_neg_integer(), non_neg_integer(),
                forward | backward) ->
          {ok, reference(), term()} | {error, term()}.
read_page(H, Source, From, Count, Direction) ->
    ex_esdb_nif:read_page(H, Source, From, Count, Direction).

-spec page_records(reference(), tuple()) -> {ok, list()} | {error, term()}.
page_records(Page, Format) -> ex_esdb_nif:page_records(Page, Format).

-spec stream_info(handle(), binary()) -> tuple().
stream_info(H, StreamId) -> ex_esdb_nif:stream_info(H, StreamId).

-spec list_streams(handle(), binary() | nil, non_neg_integer()) ->
          {ok, [tuple()]} | {error, term()}.
list_streams(H, After, Count) -> ex_esdb_nif:list_streams(H, After, Count).

-spec snapshot_get(handle(), binary()) -> {ok, tuple()} | {error, term()}.
snapshot_get(H, Uuid) ->
    translate(snapshot_get, ex_esdb_nif:snapshot_get(H, Uuid)).

-spec checkpoint_get(handle(), binary()) -> {ok, tuple()} | {error, term()}.
checkpoint_get(H, Name) ->
    translate(checkpoint_get, ex_esdb_nif:checkpoint_get(H, Name)).

-spec checkpoint_list(handle(), binary() | nil, non_neg_integer()) ->
          {ok, [tuple()]} | {error, term()}.
checkpoint_list(H, After, Count) ->
    ex_esdb_nif:checkpoint_list(H, After, Count).

%% ---- transient subscriptions ---------------------------------------------

%% @doc Make `Pid' a member of `Source''s topic: events as records of
%% `Format', `Shape' `false' (plain `{events, L}'), `true' (tagged) or
%% `ranged', `Credit' a count or `infinity'.
-spec subscribe(handle(), pid(), term(), {module(), boolean()},
                boolean() | ranged, pos_integer() | infinity) ->
          {ok, non_neg_integer(), non_neg_integer()} | {error, term()}.
subscribe(H, Pid, Source, Format, false, infinity) ->
    ex_esdb_nif:subscribe(H, Pid, Source, Format);
subscribe(H, Pid, Source, Format, Shape, infinity) ->
    ex_esdb_nif:subscribe(H, Pid, Source, Format, Shape);
subscribe(H, Pid, Source, Format, Shape, Credit) ->
    ex_esdb_nif:subscribe(H, Pid, Source, Format, Shape, Credit).

-spec grant(handle(), non_neg_integer(), pos_integer()) -> ok | {error, term()}.
grant(H, Member, N) -> translate(grant, ex_esdb_nif:grant(H, Member, N)).

-spec unsubscribe(handle(), non_neg_integer()) -> ok | {error, term()}.
unsubscribe(H, Member) ->
    translate(unsubscribe, ex_esdb_nif:unsubscribe(H, Member)).

%% ---- maintenance ---------------------------------------------------------

%% @doc verify and backup run on threads of their own and answer when
%% done, however long that takes: the caller waits without bound.
-spec verify(handle()) -> ok | {error, term()}.
verify(H) -> unbounded(H, fun(Ref) -> ex_esdb_nif:verify(H, Ref) end).

-spec backup(handle(), binary()) -> ok | {error, term()}.
backup(H, Dest) ->
    unbounded(H, fun(Ref) -> ex_esdb_nif:backup(H, Ref, Dest) end).

unbounded(H, Start) ->
    call(Start, infinity, fun(Ref) -> ex_esdb_nif:cancel(H, Ref) end).

%% @doc A stored term, decoded with the store's checks.
-spec decode_term(binary()) -> term().
decode_term(Bin) -> ex_esdb_nif:decode_term(Bin).
