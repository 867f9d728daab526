%% @doc The NIF stubs, one per function in the table of c_src/nif/ex_esdb_nif.c.
%% Use the `ex_esdb' module (Erlang) or `ExESDB.*' (Elixir) instead:
%% they check options and wait for the asynchronous replies.
-module(ex_esdb_nif).

%% Every function here is a NIF, exported as it is.
-define(NIFS,
        [open/2, close/1, append/5, delete_stream/4, snapshot_put/7,
         snapshot_delete/3, checkpoint_put/5, checkpoint_delete/3,
         snapshot_put/8, snapshot_delete/4, checkpoint_put/6,
         checkpoint_delete/4,
         read_stream/5, read_all/4, read_type/4, stream_info/2,
         list_streams/3, snapshot_get/2, checkpoint_get/2,
         checkpoint_list/3, stats/1, limits/1, cancel/2, verify/2, backup/3,
         read_records/6, read_page/5, page_records/2, subscribe/4, subscribe/5, subscribe/6,
         unsubscribe/2, grant/3,
         decode_term/1, cluster_support/0, protocol_table/0,
         cluster_open/3, cluster_info/1, cluster_members/1, cluster_install_copy/2, cluster_add/3, cluster_assign/3,
         cluster_remove/2, cluster_transfer/2]).
-export(?NIFS).
-nifs(?NIFS).

-on_load(init/0).

init() ->
    Dir = case code:priv_dir(ex_esdb) of
              {error, bad_name} ->
                  %% Not loaded as an application (e.g. erl -pa): look
                  %% beside this module's ebin.
                  filename:join(filename:dirname(filename:dirname(
                                  code:which(?MODULE))), "priv");
              D -> D
          end,
    erlang:load_nif(filename:join(Dir, "ex_esdb_nif"), 0).

open(_Path, _Opts) -> erlang:nif_error(not_loaded).
close(_Store) -> erlang:nif_error(not_loaded).
append(_Store, _Ref, _StreamId, _Expected, _Events) -> erlang:nif_error(not_loaded).
delete_stream(_Store, _Ref, _StreamId, _Expected) -> erlang:nif_error(not_loaded).
snapshot_put(_Store, _Ref, _Uuid, _Version, _Type, _Data, _Meta) -> erlang:nif_error(not_loaded).
snapshot_delete(_Store, _Ref, _Uuid) -> erlang:nif_error(not_loaded).
checkpoint_put(_Store, _Ref, _Name, _Checkpoint, _Definition) -> erlang:nif_error(not_loaded).
checkpoint_delete(_Store, _Ref, _Name) -> erlang:nif_error(not_loaded).
%% The same with a request, {Id, Retry} (ex_esdb_backend's request form).
snapshot_put(_Store, _Ref, _Uuid, _Version, _Type, _Data, _Meta, _Request) -> erlang:nif_error(not_loaded).
snapshot_delete(_Store, _Ref, _Uuid, _Request) -> erlang:nif_error(not_loaded).
checkpoint_put(_Store, _Ref, _Name, _Checkpoint, _Definition, _Request) -> erlang:nif_error(not_loaded).
checkpoint_delete(_Store, _Ref, _Name, _Request) -> erlang:nif_error(not_loaded).
read_stream(_Store, _StreamId, _From, _Count, _Direction) -> erlang:nif_error(not_loaded).
read_all(_Store, _From, _Count, _Direction) -> erlang:nif_error(not_loaded).
read_type(_Store, _Type, _From, _Count) -> erlang:nif_error(not_loaded).
stream_info(_Store, _StreamId) -> erlang:nif_error(not_loaded).
list_streams(_Store, _After, _Count) -> erlang:nif_error(not_loaded).
snapshot_get(_Store, _Uuid) -> erlang:nif_error(not_loaded).
checkpoint_get(_Store, _Name) -> erlang:nif_error(not_loaded).
checkpoint_list(_Store, _After, _Count) -> erlang:nif_error(not_loaded).
stats(_Store) -> erlang:nif_error(not_loaded).
limits(_Store) -> erlang:nif_error(not_loaded).
cancel(_Store, _Ref) -> erlang:nif_error(not_loaded).
verify(_Store, _Ref) -> erlang:nif_error(not_loaded).
backup(_Store, _Ref, _Dest) -> erlang:nif_error(not_loaded).
read_records(_Store, _Source, _From, _Count, _Direction, _Format) -> erlang:nif_error(not_loaded).
read_page(_Store, _Source, _From, _Count, _Direction) -> erlang:nif_error(not_loaded).
page_records(_Page, _Format) -> erlang:nif_error(not_loaded).
subscribe(_Store, _Pid, _Source, _Format) -> erlang:nif_error(not_loaded).
subscribe(_Store, _Pid, _Source, _Format, _Tagged) -> erlang:nif_error(not_loaded).
subscribe(_Store, _Pid, _Source, _Format, _Shape, _Credit) -> erlang:nif_error(not_loaded).
unsubscribe(_Store, _MemberId) -> erlang:nif_error(not_loaded).
grant(_Store, _MemberId, _N) -> erlang:nif_error(not_loaded).
decode_term(_Bin) -> erlang:nif_error(not_loaded).
cluster_support() -> erlang:nif_error(not_loaded).
protocol_table() -> erlang:nif_error(not_loaded).
cluster_open(_Path, _Opts, _Cluster) -> erlang:nif_error(not_loaded).
cluster_info(_Store) -> erlang:nif_error(not_loaded).
cluster_members(_Store) -> erlang:nif_error(not_loaded).
cluster_install_copy(_Store, _Path) -> erlang:nif_error(not_loaded).
cluster_add(_Store, _Id, _Address) -> erlang:nif_error(not_loaded).
cluster_assign(_Store, _Id, _Role) -> erlang:nif_error(not_loaded).
cluster_remove(_Store, _Id) -> erlang:nif_error(not_loaded).
cluster_transfer(_Store, _Id) -> erlang:nif_error(not_loaded).
