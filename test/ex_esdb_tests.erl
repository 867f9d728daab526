%% EUnit suite of the Erlang API (ex_esdb), on real stores in temp dirs.
-module(ex_esdb_tests).

-include_lib("eunit/include/eunit.hrl").

%% Run on a peer node by writer_lock_test and
%% maintenance_leaves_the_dirty_schedulers_test_.
-export([hold_store/1, verify_beside_a_read/1]).

%% ---- fixtures -----------------------------------------------------------

tmp_dir() ->
    Dir = string:trim(os:cmd("mktemp -d /tmp/ex_esdb_eunit.XXXXXX")),
    true = filelib:is_dir(Dir),
    Dir.

%% Run Fun(Store, Dir) on a fresh nosync store (plus Opts), then close the
%% store and remove the directory whatever happened.
with_store(Fun) -> with_store(#{}, Fun).

with_store(Opts, Fun) ->
    Dir = tmp_dir(),
    Path = filename:join(Dir, "store"),
    {ok, S} = ex_esdb:open(Path, maps:merge(#{durability => nosync}, Opts)),
    try
        if is_function(Fun, 1) -> Fun(S);
           is_function(Fun, 2) -> Fun(S, Dir)
        end
    after
        ok = ex_esdb:close(S),
        ok = file:del_dir_r(Dir)
    end.

ev(Type) -> #{event_type => Type}.
ev(Type, Data) -> #{event_type => Type, data => Data}.

numbered(N) -> [ev(<<"numbered">>, integer_to_binary(I)) || I <- lists:seq(1, N)].

datas({ok, Events}) -> [D || #{data := D} <- Events].
versions({ok, Events}) -> [V || #{version := V} <- Events].
positions({ok, Events}) -> [P || #{position := P} <- Events].

bins(From, To) -> [integer_to_binary(I) || I <- lists:seq(From, To)].

%% ---- open / close -------------------------------------------------------

open_forms_test() ->
    Dir = tmp_dir(),
    try
        Path = filename:join(Dir, "s"),
        %% proplist with a bare atom, string path
        {ok, S1} = ex_esdb:open(Path, [create, {durability, nosync}]),
        ?assertEqual(ok, ex_esdb:close(S1)),
        ?assertEqual(ok, ex_esdb:close(S1)),
        %% map, binary path, the store is still there
        {ok, S2} = ex_esdb:open(list_to_binary(Path), #{create => false}),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S2, <<"x">>)),
        ok = ex_esdb:close(S2)
    after
        ok = file:del_dir_r(Dir)
    end.

%% Every durability opens and appends; the NIF's own check refuses others.
durability_modes_test() ->
    Dir = tmp_dir(),
    try
        lists:foreach(
          fun(Mode) ->
              Path = filename:join(Dir, atom_to_list(Mode)),
              {ok, S} = ex_esdb:open(Path, #{durability => Mode}),
              ?assertMatch({ok, _}, ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>)])),
              ok = ex_esdb:close(S)
          end, [sync, strict, no_meta_sync, nosync]),
        ?assertEqual({error, invalid_option},
                     ex_esdb_nif:open(list_to_binary(filename:join(Dir, "x")),
                                      #{durability => always}))
    after
        ok = file:del_dir_r(Dir)
    end.

open_errors_test() ->
    Dir = tmp_dir(),
    try
        Path = filename:join(Dir, "s"),
        ?assertEqual({error, {invalid_option, bogus}},
                     ex_esdb:open(Path, #{bogus => 1})),
        ?assertEqual({error, {invalid_option, bogus}},
                     ex_esdb:open(Path, [{durability, nosync}, bogus])),
        ?assertEqual({error, {invalid_option, durability}},
                     ex_esdb:open(Path, #{durability => always})),
        ?assertEqual({error, {invalid_option, create}},
                     ex_esdb:open(Path, #{create => yes})),
        ?assertEqual({error, {invalid_option, max_event_bytes}},
                     ex_esdb:open(Path, #{max_event_bytes => 0})),
        ?assertEqual({error, {invalid_option, map_size}},
                     ex_esdb:open(Path, #{map_size => -1})),
        %% in type but out of the core's range
        ?assertEqual({error, invalid_option},
                     ex_esdb:open(Path, #{map_size => 1000})),
        ?assertEqual({error, invalid_option},
                     ex_esdb:open(Path, #{max_stream_id => 1 bsl 20})),
        ?assertEqual({error, no_store},
                     ex_esdb:open(Path, #{create => false})),
        ?assertNot(filelib:is_dir(Path)),
        {ok, S} = ex_esdb:open(Path, #{durability => nosync}),
        ?assertEqual({error, already_open}, ex_esdb:open(Path, #{})),
        ok = ex_esdb:close(S),
        %% closing releases the path
        {ok, S2} = ex_esdb:open(Path, #{}),
        ok = ex_esdb:close(S2),
        %% a file, or a directory holding something else, is not a store
        File = filename:join(Dir, "file"),
        ok = file:write_file(File, <<"x">>),
        ?assertEqual({error, not_a_store}, ex_esdb:open(File, #{})),
        ?assertEqual({error, not_a_store},
                     ex_esdb:open(Dir, #{create => false}))
    after
        ok = file:del_dir_r(Dir)
    end.

file_mode_test() ->
    Dir = tmp_dir(),
    Mode = fun(P) -> {ok, I} = file:read_file_info(P),
                     element(8, I) band 8#777 end,
    try
        Default = filename:join(Dir, "default"),
        {ok, S1} = ex_esdb:open(Default, #{durability => nosync}),
        ok = ex_esdb:close(S1),
        ?assertEqual(8#700, Mode(Default)),
        ?assertEqual(8#600, Mode(filename:join(Default, "data.mdb"))),
        Shared = filename:join(Dir, "shared"),
        {ok, S2} = ex_esdb:open(Shared, #{file_mode => 8#640}),
        ok = ex_esdb:close(S2),
        ?assertEqual(8#750, Mode(Shared)),
        ?assertEqual(8#640, Mode(filename:join(Shared, "lock.mdb"))),
        ?assertEqual({error, invalid_option},
                     ex_esdb:open(filename:join(Dir, "x"),
                                  #{file_mode => 8#400})),
        ?assertEqual({error, {invalid_option, file_mode}},
                     ex_esdb:open(filename:join(Dir, "x"),
                                  #{file_mode => rw}))
    after
        ok = file:del_dir_r(Dir)
    end.

%% A small tmpfs (root only; skipped with a message otherwise).
with_small_disk(Size, Fun) ->
    Dir = tmp_dir(),
    case os:cmd("mount -t tmpfs -o size=" ++ Size ++ " tmpfs " ++ Dir
                ++ " 2>&1 && echo mounted") of
        "mounted\n" ->
            try Fun(Dir)
            after
                os:cmd("umount -l " ++ Dir),
                file:del_dir_r(Dir)
            end;
        Why ->
            file:del_dir_r(Dir),
            io:format(user, "~nskipped: cannot mount a tmpfs: ~s", [Why])
    end.

fill_disk(Dir) ->
    File = filename:join(Dir, "filler"),
    {ok, F} = file:open(File, [write, raw, binary]),
    Block = binary:copy(<<"f">>, 65536),
    Fill = fun Loop() -> case file:write(F, Block) of
                             ok -> Loop();
                             {error, _} -> ok
                         end end,
    Fill(),
    file:close(F),
    File.

full_disk_test_() ->
    {timeout, 60, fun() ->
        %% creation: an error, not a dead VM, and nothing left behind
        with_small_disk("256k", fun(Dir) ->
            fill_disk(Dir),
            Path = filename:join([Dir, "a", "store"]),
            ?assertEqual({error, disk_full}, ex_esdb:open(Path, #{})),
            ?assertNot(filelib:is_dir(filename:join(Dir, "a")))
        end),
        %% appends: disk_full, then writes again once space is freed
        with_small_disk("2m", fun(Dir) ->
            {ok, S} = ex_esdb:open(filename:join(Dir, "store"), #{}),
            Filler = fill_disk(Dir),
            Big = binary:copy(<<"b">>, 20000),
            Append = fun Loop(N) ->
                case ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>, Big)]) of
                    {ok, _} when N < 10000 -> Loop(N + 1);
                    Other -> Other
                end end,
            ?assertEqual({error, disk_full}, Append(0)),
            ok = file:delete(Filler),
            ?assertMatch({ok, _},
                         ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>, Big)])),
            ok = ex_esdb:close(S)
        end)
    end}.

%% verify (and backup) run on a thread of their own: in a node with one
%% dirty IO scheduler a read still answers while a long verify runs.
maintenance_leaves_the_dirty_schedulers_test_() ->
    {timeout, 300, fun() ->
        Dir = tmp_dir(),
        {ok, Peer, _} =
            peer:start(#{connection => standard_io,
                         args => ["+SDio", "1", "-pa" | code:get_path()]}),
        try
            ?assertEqual(read_first,
                         peer:call(Peer, ?MODULE, verify_beside_a_read,
                                   [Dir], 240000))
        after
            peer:stop(Peer),
            file:del_dir_r(Dir)
        end
    end}.

verify_beside_a_read(Dir) ->
    {ok, S} = ex_esdb:open(filename:join(Dir, "store"),
                           #{durability => nosync}),
    Batch = numbered(1000),
    [{ok, _} = ex_esdb:append(S, <<"s", (integer_to_binary(I))/binary>>,
                              any, Batch) || I <- lists:seq(1, 200)],
    Self = self(),
    P = spawn_link(fun() -> Self ! {verified, ex_esdb:verify(S)} end),
    %% wait until it is verifying: in the NIF, or waiting for its thread
    Verifying = fun Wait() ->
        case process_info(P, current_function) of
            {current_function, {ex_esdb_nif, verify, _}} -> ok;
            {current_function, {ex_esdb_backend, wait, _}} -> ok;
            undefined -> ok; % done already: verify_first
            _ -> erlang:yield(), Wait()
        end end,
    Verifying(),
    {ok, [_]} = ex_esdb:read_all(S, 1, 1, forward),
    First = receive {verified, ok} -> verify_first
            after 0 -> receive {verified, ok} -> read_first end
            end,
    ok = ex_esdb:close(S),
    First.

closed_store_test() ->
    Dir = tmp_dir(),
    try
        {ok, S} = ex_esdb:open(filename:join(Dir, "s"),
                               #{durability => nosync}),
        {ok, _} = ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>)]),
        ok = ex_esdb:close(S),
        C = {error, closed},
        ?assertEqual(C, ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>)])),
        ?assertEqual(C, ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>)], 1000)),
        ?assertEqual(C, ex_esdb:read_stream(S, <<"a">>, 0, 10, forward)),
        ?assertEqual(C, ex_esdb:read_all(S, 0, 10, forward)),
        ?assertEqual(C, ex_esdb:read_type(S, <<"t">>, 0, 10)),
        ?assertEqual(C, ex_esdb:stream_version(S, <<"a">>)),
        ?assertError({ex_esdb, closed}, ex_esdb:stream_exists(S, <<"a">>)),
        ?assertEqual(C, ex_esdb:streams(S)),
        ?assertEqual(C, ex_esdb:list_streams(S, undefined, 10)),
        ?assertEqual(C, ex_esdb:delete_stream(S, <<"a">>, any)),
        ?assertEqual(C, ex_esdb:put_snapshot(S, <<"u">>, 1, <<"t">>, <<>>,
                                             <<>>)),
        ?assertEqual(C, ex_esdb:get_snapshot(S, <<"u">>)),
        ?assertEqual(C, ex_esdb:delete_snapshot(S, <<"u">>)),
        ?assertEqual(C, ex_esdb:put_checkpoint(S, <<"c">>, 1, <<>>)),
        ?assertEqual(C, ex_esdb:get_checkpoint(S, <<"c">>)),
        ?assertEqual(C, ex_esdb:delete_checkpoint(S, <<"c">>)),
        ?assertEqual(C, ex_esdb:checkpoints(S)),
        ?assertEqual(C, ex_esdb:stats(S)),
        ?assertEqual(C, ex_esdb:verify(S)),
        ?assertEqual(C, ex_esdb:backup(S, filename:join(Dir, "b"))),
        ?assertEqual(ok, ex_esdb:close(S))
    after
        ok = file:del_dir_r(Dir)
    end.

%% Acknowledged appends are on disk with the durable settings: sync (the
%% default) and strict.
durable_reopen_test_() ->
    [{atom_to_list(D), fun() -> durable_reopen(D) end} || D <- [sync, strict]].

durable_reopen(Durability) ->
    Dir = tmp_dir(),
    try
        Path = filename:join(Dir, "s"),
        {ok, S} = ex_esdb:open(Path, #{durability => Durability}),
        Id = ex_esdb:uuid_v4(),
        ?assertEqual({ok, #{version => 2, position => 1}},
                     ex_esdb:append(S, <<"acct">>, no_stream,
                                    [(ev(<<"opened">>, <<"a">>))#{event_id => Id},
                                     ev(<<"deposited">>, <<"b">>)])),
        ok = ex_esdb:put_checkpoint(S, <<"sub">>, 2, <<"def">>),
        ok = ex_esdb:close(S),
        {ok, S2} = ex_esdb:open(Path, #{create => false}),
        try
            {ok, [#{event_id := Id0} | _]} = Read =
                ex_esdb:read_stream(S2, <<"acct">>, 0, 10, forward),
            ?assertEqual(Id, Id0),
            ?assertEqual([<<"a">>, <<"b">>], datas(Read)),
            ?assertMatch({ok, #{checkpoint := 2, definition := <<"def">>}},
                         ex_esdb:get_checkpoint(S2, <<"sub">>)),
            ?assertEqual(ok, ex_esdb:verify(S2))
        after
            ok = ex_esdb:close(S2)
        end
    after
        ok = file:del_dir_r(Dir)
    end.

%% ---- one process writes a store ----------------------------------------

ctl() ->
    Priv = case code:priv_dir(ex_esdb) of
               {error, bad_name} -> "priv";
               D -> D
           end,
    filename:join(Priv, "ex_esdb_ctl").

%% Shell words quoted for os:cmd; the exit status appended as "exit=N".
ctl(Args) ->
    os:cmd(string:join([ctl() | Args], " ") ++ " 2>&1; echo exit=$?").

has(Text, Part) -> string:find(Text, Part) =/= nomatch.

cli_refuses_a_store_this_node_writes_test() ->
    with_store(fun(S, Dir) ->
        {ok, _} = ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>)]),
        Path = filename:join(Dir, "store"),
        Out = ctl(["--store", Path, "append", "s", "--type", "t",
                   "< /dev/null"]),
        Holder = "by pid " ++ os:getpid() ++ " (" ++ atom_to_list(node())
            ++ ")",
        ?assert(has(Out, Holder)),
        ?assert(has(Out, "exit=1")),
        ?assert(has(ctl(["--store", Path, "read", "s"]), "exit=0")),
        ?assertEqual({ok, 1}, ex_esdb:stream_version(S, <<"s">>))
    end).

%% Open Path for writing in a process that keeps it; its OS pid.
hold_store(Path) ->
    Self = self(),
    spawn(fun() ->
                  {ok, S} = ex_esdb:open(Path, #{durability => nosync}),
                  Self ! {held, S},
                  receive stop -> ex_esdb:close(S) end
          end),
    receive {held, _} -> {ok, os:getpid()} end.

open_when_unlocked(Path, Tries) ->
    case ex_esdb:open(Path, #{}) of
        {error, locked} when Tries > 0 ->
            timer:sleep(20),
            open_when_unlocked(Path, Tries - 1);
        Result ->
            Result
    end.

writer_lock_test() ->
    Dir = tmp_dir(),
    Path = filename:join(Dir, "store"),
    Pa = lists:append([["-pa", P] || P <- code:get_path()]),
    {ok, Peer, _} = peer:start_link(#{connection => standard_io, args => Pa}),
    try
        {ok, _PeerPid} = peer:call(Peer, ?MODULE, hold_store, [Path]),
        ?assertEqual({error, locked}, ex_esdb:open(Path, #{})),
        {ok, R} = ex_esdb:open(Path, #{readonly => true}),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(R, <<"s">>)),
        ok = ex_esdb:close(R),
        peer:stop(Peer),
        %% the lock goes with the peer's OS process, which ends a little
        %% after peer:stop returns
        {ok, W} = open_when_unlocked(Path, 500),
        ok = ex_esdb:close(W)
    after
        catch peer:stop(Peer),
        ok = file:del_dir_r(Dir)
    end.

readonly_test() ->
    Dir = tmp_dir(),
    try
        Path = filename:join(Dir, "s"),
        {ok, S} = ex_esdb:open(Path, #{durability => nosync}),
        {ok, _} = ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>, <<"1">>)]),
        ok = ex_esdb:close(S),
        {ok, R} = ex_esdb:open(Path, [readonly]),
        try
            ?assertEqual({error, read_only},
                         ex_esdb:append(R, <<"a">>, any, [ev(<<"t">>)])),
            ?assertEqual({error, read_only},
                         ex_esdb:put_checkpoint(R, <<"c">>, 1, <<>>)),
            ?assertEqual([<<"1">>],
                         datas(ex_esdb:read_stream(R, <<"a">>, 0, 10,
                                                   forward)))
        after
            ok = ex_esdb:close(R)
        end
    after
        ok = file:del_dir_r(Dir)
    end.

%% ---- appends ------------------------------------------------------------

append_and_read_back_test() ->
    with_store(fun(S) ->
        Id = ex_esdb:uuid_v4(),
        Cause = ex_esdb:uuid_v4(),
        Corr = <<"8E4B1C2A-0D3F-4A5B-9C6D-7E8F90A1B2C3">>,
        {ok, CorrRaw} = ex_esdb:uuid_from_string(Corr),
        ?assertEqual({ok, #{version => 1, position => 1}},
                     ex_esdb:append(S, <<"s1">>, no_stream,
                                    [#{event_type => <<"created">>,
                                       data => <<"{\"a\":1}">>,
                                       metadata => <<"m">>,
                                       event_id => ex_esdb:uuid_to_string(Id),
                                       causation_id => Cause,
                                       correlation_id => Corr}])),
        ?assertEqual({ok, #{version => 3, position => 2}},
                     ex_esdb:append(S, <<"s1">>, 1,
                                    [ev(<<"changed">>), ev(<<"changed">>)])),
        ?assertEqual({ok, #{version => 1, position => 4}},
                     ex_esdb:append(S, <<"s2">>, 0, [ev(<<"created">>)], 5000)),
        {ok, [E1, E2, E3]} = ex_esdb:read_stream(S, <<"s1">>, 0, 10, forward),
        ?assertMatch(#{position := 1, stream_id := <<"s1">>, version := 1,
                       event_type := <<"created">>, data := <<"{\"a\":1}">>,
                       metadata := <<"m">>}, E1),
        ?assertEqual(Id, maps:get(event_id, E1)),
        ?assertEqual(Cause, maps:get(causation_id, E1)),
        ?assertEqual(CorrRaw, maps:get(correlation_id, E1)),
        %% defaults
        ?assertMatch(#{data := <<>>, metadata := <<>>,
                       causation_id := undefined,
                       correlation_id := undefined,
                       version := 2, position := 2}, E2),
        ?assertEqual([event_id, position, stream_id, version, event_type,
                      data, metadata, causation_id, correlation_id,
                      created_us] -- maps:keys(E2), []),
        %% generated ids are distinct v4 UUIDs
        #{event_id := <<_:48, 4:4, _:12, 2:2, _:62>> = G2} = E2,
        #{event_id := G3} = E3,
        ?assertNotEqual(G2, G3),
        ?assert(maps:get(created_us, E1) > 1500000000000000),
        ?assert(maps:get(created_us, E1) =< maps:get(created_us, E3))
    end).

expected_version_test() ->
    with_store(fun(S) ->
        A = [ev(<<"t">>)],
        ?assertEqual({error, stream_not_found},
                     ex_esdb:append(S, <<"s">>, stream_exists, A)),
        ?assertEqual({error, wrong_expected_version},
                     ex_esdb:append(S, <<"s">>, 3, A)),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"s">>)),
        {ok, #{version := 1}} = ex_esdb:append(S, <<"s">>, no_stream, A),
        ?assertEqual({error, stream_exists},
                     ex_esdb:append(S, <<"s">>, no_stream, A)),
        ?assertEqual({error, wrong_expected_version},
                     ex_esdb:append(S, <<"s">>, 0, A)),
        ?assertEqual({error, wrong_expected_version},
                     ex_esdb:append(S, <<"s">>, 2, A)),
        ?assertEqual({ok, 1}, ex_esdb:stream_version(S, <<"s">>)),
        {ok, #{version := 2}} = ex_esdb:append(S, <<"s">>, 1, A),
        {ok, #{version := 3}} = ex_esdb:append(S, <<"s">>, stream_exists, A),
        {ok, #{version := 4}} = ex_esdb:append(S, <<"s">>, any, A),
        {ok, #{version := 1}} = ex_esdb:append(S, <<"other">>, any, A),
        ?assertEqual({ok, 4}, ex_esdb:stream_version(S, <<"s">>)),
        ?assertMatch({ok, #{events := 5}}, ex_esdb:stats(S))
    end).

%% A retry of an applied append (same ids, same expectation) writes
%% nothing and answers the original result.
idempotent_retry_test() ->
    with_store(fun(S) ->
        Batch = [(ev(<<"t">>, integer_to_binary(I)))#{event_id => ex_esdb:uuid_v4()}
                 || I <- [1, 2, 3]],
        {ok, _} = ex_esdb:append(S, <<"other">>, any, [ev(<<"x">>)]),
        First = ex_esdb:append(S, <<"s">>, no_stream, Batch),
        ?assertEqual({ok, #{version => 3, position => 2}}, First),
        ?assertEqual(First, ex_esdb:append(S, <<"s">>, no_stream, Batch)),
        ?assertEqual(First, ex_esdb:append(S, <<"s">>, 0, Batch)),
        ?assertEqual(First, ex_esdb:append(S, <<"s">>, any, Batch)),
        ?assertEqual({ok, 3}, ex_esdb:stream_version(S, <<"s">>)),
        ?assertMatch({ok, #{events := 4}}, ex_esdb:stats(S)),
        %% the same expectation with new ids is a conflict
        Fresh = [ev(<<"t">>) || _ <- Batch],
        ?assertEqual({error, stream_exists},
                     ex_esdb:append(S, <<"s">>, no_stream, Fresh)),
        ?assertEqual({error, wrong_expected_version},
                     ex_esdb:append(S, <<"s">>, 0, Fresh))
    end).

%% Issue 12: after other appends, an `any' retry is recognised when
%% marked {retry, Expected} (the stream's last 1,024 versions).
marked_retry_test() ->
    with_store(fun(S) ->
        Batch = [(ev(<<"t">>, integer_to_binary(I)))#{event_id => ex_esdb:uuid_v4()}
                 || I <- [1, 2]],
        First = ex_esdb:append(S, <<"s">>, any, Batch),
        ?assertEqual({ok, #{version => 2, position => 1}}, First),
        {ok, _} = ex_esdb:append(S, <<"s">>, any, [ev(<<"x">>)]),
        ?assertEqual(First, ex_esdb:append(S, <<"s">>, {retry, any}, Batch)),
        ?assertEqual(First, ex_esdb:append(S, <<"s">>, {retry, stream_exists}, Batch)),
        ?assertMatch({ok, #{events := 3}}, ex_esdb:stats(S)),
        ?assertEqual({error, {invalid_expected_version, {retry, nope}}},
                     ex_esdb:append(S, <<"s">>, {retry, nope}, Batch)),
        ?assertEqual({error, {invalid_expected_version, {retry, any}}},
                     ex_esdb:delete_stream(S, <<"s">>, {retry, any}))
    end).

invalid_events_test() ->
    with_store(fun(S) ->
        Bad = fun(Events) -> ex_esdb:append(S, <<"s">>, any, Events) end,
        %% the Elixir API's words for the same mistakes
        ?assertEqual({error, {invalid_event, #{data => <<"x">>}}},
                     Bad([#{data => <<"x">>}])),
        ?assertEqual({error, {invalid_event_type, "t"}},
                     Bad([#{event_type => "t"}])),
        ?assertEqual({error, {invalid_data, "x"}},
                     Bad([ev(<<"t">>), #{event_type => <<"t">>, data => "x"}])),
        ?assertEqual({error, {invalid_metadata, 1}},
                     Bad([#{event_type => <<"t">>, metadata => 1}])),
        ?assertEqual({error, {invalid_event_id, <<"not-a-uuid">>}},
                     Bad([#{event_type => <<"t">>, event_id => <<"not-a-uuid">>}])),
        ?assertEqual({error, {invalid_causation_id, <<1, 2>>}},
                     Bad([#{event_type => <<"t">>, causation_id => <<1, 2>>}])),
        ?assertEqual({error, {invalid_event, {unknown_key, type}}},
                     Bad([#{event_type => <<"t">>, type => <<"t">>}])),
        ?assertEqual({error, {invalid_event, {<<"t">>}}},
                     Bad([{<<"t">>}])),
        ?assertEqual({error, no_events}, Bad([])),
        ?assertEqual({error, {invalid_events, nope}}, Bad(nope)),
        ?assertEqual({error, {invalid_stream_id, "s"}},
                     ex_esdb:append(S, "s", any, [ev(<<"t">>)])),
        ?assertEqual({error, {invalid_expected_version, -1}},
                     ex_esdb:append(S, <<"s">>, -1, [ev(<<"t">>)])),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"s">>))
    end).

%% An argument of the wrong type is answered {error, {invalid_<what>,
%% Value}}, as in the Elixir API: nothing raises.
bad_arguments_test() ->
    with_store(fun(S) ->
        E = [ev(<<"t">>)],
        Answer = fun(F) ->
                         try F()
                         catch C:R -> {raised, C, R}
                         end
                 end,
        Cases =
            [{{invalid_timeout, -5},
              fun() -> ex_esdb:append(S, <<"s">>, any, E, -5) end},
             {{invalid_stream_id, 42},
              fun() -> ex_esdb:read_stream(S, 42, 0, 10, forward) end},
             {{invalid_start, -1},
              fun() -> ex_esdb:read_stream(S, <<"s">>, -1, 10, forward) end},
             {{invalid_count, -1},
              fun() -> ex_esdb:read_stream(S, <<"s">>, 0, -1, forward) end},
             {{invalid_direction, sideways},
              fun() -> ex_esdb:read_stream(S, <<"s">>, 0, 10, sideways) end},
             {{invalid_direction, up},
              fun() -> ex_esdb:read_stream_page(S, <<"s">>, 0, 10, up) end},
             {{invalid_start, x},
              fun() -> ex_esdb:read_all(S, x, 10, forward) end},
             {{invalid_count, many},
              fun() -> ex_esdb:read_all_page(S, 0, many, forward) end},
             {{invalid_event_type, 't'},
              fun() -> ex_esdb:read_type(S, 't', 0, 10) end},
             {{invalid_start, -2},
              fun() -> ex_esdb:read_type_page(S, <<"t">>, -2, 10) end},
             {{invalid_stream_id, 42},
              fun() -> ex_esdb:stream_version(S, 42) end},
             {{invalid_stream_id, 42},
              fun() -> ex_esdb:list_streams(S, 42, 10) end},
             {{invalid_count, -1},
              fun() -> ex_esdb:list_streams(S, undefined, -1) end},
             {{invalid_stream_id, 42},
              fun() -> ex_esdb:delete_stream(S, 42, any) end},
             {{invalid_expected_version, maybe},
              fun() -> ex_esdb:delete_stream(S, <<"s">>, maybe) end},
             {{invalid_source_uuid, 1},
              fun() -> ex_esdb:put_snapshot(S, 1, 1, <<>>, <<>>, <<>>) end},
             {{invalid_source_version, -1},
              fun() -> ex_esdb:put_snapshot(S, <<"u">>, -1, <<>>, <<>>, <<>>) end},
             {{invalid_source_type, t},
              fun() -> ex_esdb:put_snapshot(S, <<"u">>, 1, t, <<>>, <<>>) end},
             {{invalid_data, d},
              fun() -> ex_esdb:put_snapshot(S, <<"u">>, 1, <<>>, d, <<>>) end},
             {{invalid_metadata, m},
              fun() -> ex_esdb:put_snapshot(S, <<"u">>, 1, <<>>, <<>>, m) end},
             {{invalid_source_uuid, <<>>},
              fun() -> ex_esdb:get_snapshot(S, <<>>) end},
             {{invalid_source_uuid, nil},
              fun() -> ex_esdb:delete_snapshot(S, nil) end},
             {{invalid_subscription_name, 1},
              fun() -> ex_esdb:put_checkpoint(S, 1, 1, <<>>) end},
             {{invalid_checkpoint, -1},
              fun() -> ex_esdb:put_checkpoint(S, <<"c">>, -1, <<>>) end},
             {{invalid_definition, d},
              fun() -> ex_esdb:put_checkpoint(S, <<"c">>, 1, d) end},
             {{invalid_subscription_name, 1},
              fun() -> ex_esdb:get_checkpoint(S, 1) end},
             {{invalid_subscription_name, 1},
              fun() -> ex_esdb:delete_checkpoint(S, 1) end},
             %% the store's own names (a cluster's member records)
             {{invalid_subscription_name, <<"ex_esdb:member:a@h">>},
              fun() -> ex_esdb:put_checkpoint(S, <<"ex_esdb:member:a@h">>, 1, <<>>) end},
             {{invalid_subscription_name, <<"ex_esdb:member:a@h">>},
              fun() -> ex_esdb:get_checkpoint(S, <<"ex_esdb:member:a@h">>) end},
             {{invalid_subscription_name, <<"ex_esdb:barrier">>},
              fun() -> ex_esdb:delete_checkpoint(S, <<"ex_esdb:barrier">>) end},
             {{invalid_path, 42}, fun() -> ex_esdb:backup(S, 42) end},
             {{invalid_path, 42}, fun() -> ex_esdb:open(42, #{}) end},
             {{invalid_options, 42}, fun() -> ex_esdb:open("/tmp/x", 42) end}],
        [?assertEqual({Why, {error, Why}}, {Why, Answer(F)})
         || {Why, F} <- Cases],
        ?assertNot(ex_esdb:stream_exists(S, 42)),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"s">>)),
        ?assertEqual({ok, []}, ex_esdb:checkpoints(S))
    end).

%% `$' ids are reserved for the store's own streams: never written, and
%% `$all' is not a stream to ask about.
reserved_stream_ids_test() ->
    with_store(fun(S) ->
        E = [ev(<<"t">>)],
        ?assertEqual({error, {invalid_stream_id, <<"$all">>}},
                     ex_esdb:append(S, <<"$all">>, any, E)),
        ?assertEqual({error, {invalid_stream_id, <<"$ce-orders">>}},
                     ex_esdb:append(S, <<"$ce-orders">>, any, E)),
        ?assertEqual({error, {invalid_stream_id, <<>>}},
                     ex_esdb:append(S, <<>>, any, E)),
        ?assertEqual({error, {invalid_stream_id, <<"$all">>}},
                     ex_esdb:delete_stream(S, <<"$all">>, any)),
        ?assertEqual({error, {invalid_stream_id, <<"$all">>}},
                     ex_esdb:stream_version(S, <<"$all">>)),
        ?assertEqual({error, {invalid_stream_id, <<"$all">>}},
                     ex_esdb:read_stream(S, <<"$all">>, 0, 10, forward)),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"$ce-orders">>)),
        ?assertEqual({ok, []}, ex_esdb:read_all(S, 0, 10, forward)),
        ?assertEqual({ok, []}, ex_esdb:streams(S))
    end).

limits_test() ->
    with_store(#{max_event_bytes => 100, max_stream_id => 8,
                 max_append_events => 3},
               fun(S) ->
        Fits = ev(<<"t">>, binary:copy(<<"x">>, 100)),
        ?assertEqual({error, {limit_exceeded, max_event_bytes, 100}},
                     ex_esdb:append(S, <<"s">>, any,
                                    [Fits#{metadata => <<"y">>}])),
        ?assertEqual({error, {limit_exceeded, max_stream_id, 8}},
                     ex_esdb:append(S, <<"longer-than-8">>, any,
                                    [ev(<<"t">>)])),
        ?assertEqual({error, {limit_exceeded, max_append_events, 3}},
                     ex_esdb:append(S, <<"s">>, any, numbered(4))),
        ?assertEqual({error, {limit_exceeded, max_stream_id, 8}},
                     ex_esdb:delete_stream(S, <<"longer-than-8">>, any)),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"s">>)),
        ?assertEqual({ok, #{version => 1, position => 1}},
                     ex_esdb:append(S, <<"s">>, any, [Fits]))
    end).

%% Limits raised at open are the ones commands are checked against.
raised_limits_test_() ->
    {timeout, 60, fun() ->
        with_store(#{max_stream_id => 4096,
                     max_event_bytes => 32 * 1024 * 1024,
                     max_append_events => 20000},
                   fun(S) ->
            Long = binary:copy(<<"s">>, 2000),
            ?assertMatch({ok, #{version := 1}},
                         ex_esdb:append(S, Long, any, [ev(<<"t">>)])),
            Big = binary:copy(<<0>>, 20 * 1024 * 1024),
            ?assertMatch({ok, #{version := 1}},
                         ex_esdb:append(S, <<"big">>, any,
                                        [ev(<<"t">>, Big)])),
            ?assertMatch({ok, #{version := 15000}},
                         ex_esdb:append(S, <<"many">>, any,
                                        numbered(15000))),
            ?assertMatch({ok, #{max_stream_id := 4096,
                                max_append_events := 20000,
                                max_key := 1024}},
                         ex_esdb:limits(S))
        end)
    end}.

%% The store keeps its limits: a reopen without limits applies them, a
%% reopen with some changes those.
stored_limits_test() ->
    Dir = tmp_dir(),
    Path = filename:join(Dir, "store"),
    try
        {ok, S1} = ex_esdb:open(Path, #{durability => nosync,
                                        max_stream_id => 8}),
        ok = ex_esdb:close(S1),
        {ok, S2} = ex_esdb:open(Path, #{durability => nosync}),
        ?assertMatch({ok, #{max_stream_id := 8}}, ex_esdb:limits(S2)),
        ?assertEqual({error, {limit_exceeded, max_stream_id, 8}},
                     ex_esdb:append(S2, <<"123456789">>, any, [ev(<<"t">>)])),
        ok = ex_esdb:close(S2),
        {ok, S3} = ex_esdb:open(Path, #{durability => nosync,
                                        max_event_type => 9}),
        ?assertMatch({ok, #{max_stream_id := 8, max_event_type := 9}},
                     ex_esdb:limits(S3)),
        ok = ex_esdb:close(S3)
    after
        ok = file:del_dir_r(Dir)
    end.

%% The event count is checked before the events are looked at: what lies
%% past the limit is never converted (the NIF answered badarg, the API
%% invalid_event, after copying every event).
count_before_work_test() ->
    with_store(#{max_append_events => 1000}, fun(S) ->
        Tuple = {<<0:128>>, <<"t">>, <<>>, <<>>, nil, nil},
        Past = lists:duplicate(1001, Tuple) ++ [not_an_event],
        ?assertEqual({error, {limit_exceeded, max_append_events, 1000}},
                     ex_esdb_nif:append(S, make_ref(), <<"s">>, any, Past)),
        ?assertEqual({error, {limit_exceeded, max_append_events, 1000}},
                     ex_esdb:append(S, <<"s">>, any,
                                    numbered(1001) ++ [not_an_event])),
        ?assertEqual({ok, 0}, ex_esdb:stream_version(S, <<"s">>))
    end).

%% A default limit (16 MiB per event) without any option.
default_limit_test_() ->
    {timeout, 60, fun() ->
        with_store(fun(S) ->
            Big = binary:copy(<<0>>, 16 * 1024 * 1024 + 1),
            ?assertEqual({error, {limit_exceeded, max_event_bytes,
                                  16 * 1024 * 1024}},
                         ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>, Big)]))
        end)
    end}.

%% A caller that stops waiting withdraws its command when the writer has
%% not taken it: {error, timeout} means it is never applied. When the
%% writer has it already the answer is {error, outcome_unknown} (or the
%% reply, if it was sent just then); no late reply comes either way (a
%% deterministic case: test/ex_esdb/late_reply_test.exs). The writer is kept busy by a large
%% append so that most of the small ones are still queued.
append_timeout_test_() ->
    {timeout, 60, fun() ->
        with_store(fun(S) ->
            Big = [ev(<<"t">>, binary:copy(<<"x">>, 1024 * 1024))
                   || _ <- lists:seq(1, 30)],
            BigRef = make_ref(),
            ok = ex_esdb_nif:append(S, BigRef, <<"big">>, any,
                                    [nif_tuple(E) || E <- Big]),
            Streams = [integer_to_binary(I) || I <- lists:seq(1, 50)],
            Answers = [{Id, ex_esdb:append(S, Id, no_stream, [ev(<<"t">>)], 0)}
                       || Id <- Streams],
            %% The writer answers in queue order: after this one, every
            %% command queued before it is applied or withdrawn.
            {ok, _} = ex_esdb:append(S, <<"last">>, any, [ev(<<"t">>)]),
            TimedOut = [Id || {Id, {error, timeout}} <- Answers],
            ?assertNotEqual([], TimedOut),
            [?assertEqual({Id, {ok, 0}}, {Id, ex_esdb:stream_version(S, Id)})
             || Id <- TimedOut],
            [?assertEqual({Id, {ok, 1}}, {Id, ex_esdb:stream_version(S, Id)})
             || {Id, {ok, _}} <- Answers],
            [?assertMatch({_, {error, outcome_unknown}}, A)
             || {_, {error, R}} = A <- Answers, R =/= timeout],
            %% Neither withdrawn nor abandoned commands send a late reply.
            Late = [Ref || {Ref, _} <- flush(), Ref =/= BigRef],
            ?assertEqual([], Late)
        end)
    end}.

%% A full writer queue refuses at once: {error, overloaded}, nothing
%% written. The writer is kept busy by a large append.
overloaded_test_() ->
    {timeout, 60, fun() ->
        with_store(#{max_queue_bytes => 1024 * 1024}, fun(S) ->
            Big = [nif_tuple(ev(<<"t">>, binary:copy(<<"x">>, 1024 * 1024)))
                   || _ <- lists:seq(1, 30)],
            BigRef = make_ref(),
            ok = ex_esdb_nif:append(S, BigRef, <<"big">>, any, Big),
            Quarter = binary:copy(<<"y">>, 256 * 1024),
            Sent = [begin
                        Ref = make_ref(),
                        Id = integer_to_binary(I),
                        {Id, Ref,
                         ex_esdb_nif:append(S, Ref, Id, any,
                                            [nif_tuple(ev(<<"t">>, Quarter))])}
                    end || I <- lists:seq(1, 20)],
            Refused = [Id || {Id, _, {error, overloaded}} <- Sent],
            ?assertNotEqual([], Refused),
            %% Every accepted append is answered and applied.
            [receive {Ref, Reply} -> ?assertMatch({ok, 1, _}, Reply) end
             || {_, Ref, ok} <- Sent],
            receive {BigRef, _} -> ok end,
            [?assertEqual({ok, 0}, ex_esdb:stream_version(S, Id))
             || Id <- Refused],
            ?assertEqual(20, length(Refused) + length([x || {_, _, ok} <- Sent]))
        end)
    end}.

nif_tuple(#{event_type := T} = E) ->
    {ex_esdb:uuid_v4(), T, maps:get(data, E, <<>>), <<>>, nil, nil}.

flush() ->
    receive M -> [M | flush()] after 0 -> [] end.

concurrent_appends_test_() ->
    {timeout, 60, fun() ->
        with_store(fun(S) ->
            Self = self(),
            Pids = [spawn_link(fun() ->
                        Id = integer_to_binary(P),
                        [{ok, #{version := V}} =
                             ex_esdb:append(S, Id, V - 1, [ev(<<"t">>)])
                         || V <- lists:seq(1, 50)],
                        Self ! {done, self()}
                    end) || P <- lists:seq(1, 20)],
            [receive {done, P} -> ok end || P <- Pids],
            All = ex_esdb:read_all(S, 0, 2000, forward),
            ?assertEqual(lists:seq(1, 1000), positions(All)),
            {ok, Streams} = ex_esdb:streams(S),
            ?assertEqual(lists:sort(bins(1, 20)), Streams),
            [?assertEqual({ok, 50}, ex_esdb:stream_version(S, Id))
             || Id <- Streams]
        end)
    end}.

%% ---- reads --------------------------------------------------------------

read_stream_paging_test() ->
    with_store(fun(S) ->
        {ok, _} = ex_esdb:append(S, <<"s">>, no_stream, numbered(25)),
        Fwd = fun(From, N) -> ex_esdb:read_stream(S, <<"s">>, From, N,
                                                  forward) end,
        Bwd = fun(From, N) -> ex_esdb:read_stream(S, <<"s">>, From, N,
                                                  backward) end,
        ?assertEqual(lists:seq(1, 10), versions(Fwd(0, 10))),
        ?assertEqual(lists:seq(1, 10), versions(Fwd(1, 10))),
        ?assertEqual(lists:seq(11, 20), versions(Fwd(11, 10))),
        ?assertEqual(lists:seq(21, 25), versions(Fwd(21, 10))),
        ?assertEqual(bins(21, 25), datas(Fwd(21, 10))),
        ?assertEqual({ok, []}, Fwd(26, 10)),
        ?assertEqual({ok, []}, Fwd(1, 0)),
        ?assertEqual(lists:seq(25, 16, -1), versions(Bwd(25, 10))),
        ?assertEqual(lists:seq(25, 16, -1), versions(Bwd(1 bsl 64 - 1, 10))),
        ?assertEqual(lists:seq(15, 6, -1), versions(Bwd(15, 10))),
        ?assertEqual(lists:seq(5, 1, -1), versions(Bwd(5, 10))),
        ?assertEqual({ok, []}, Bwd(0, 10)),
        ?assertEqual({error, stream_not_found},
                     ex_esdb:read_stream(S, <<"absent">>, 0, 10, forward)),
        ?assertEqual({error, {invalid_direction, sideways}},
                     ex_esdb:read_stream(S, <<"s">>, 0, 10, sideways))
    end).

read_all_test() ->
    with_store(fun(S) ->
        %% interleave two streams
        [{ok, _} = ex_esdb:append(S, Id, any, [ev(<<"t">>, <<Id/binary, N>>)])
         || N <- [$1, $2, $3], Id <- [<<"a">>, <<"b">>]],
        All = ex_esdb:read_all(S, 0, 100, forward),
        ?assertEqual(lists:seq(1, 6), positions(All)),
        ?assertEqual([<<"a1">>, <<"b1">>, <<"a2">>, <<"b2">>, <<"a3">>,
                      <<"b3">>], datas(All)),
        ?assertEqual([1, 1, 2, 2, 3, 3], versions(All)),
        ?assertEqual([3, 4], positions(ex_esdb:read_all(S, 3, 2, forward))),
        ?assertEqual([6, 5, 4],
                     positions(ex_esdb:read_all(S, 1 bsl 64 - 1, 3, backward))),
        ?assertEqual([2, 1], positions(ex_esdb:read_all(S, 2, 10, backward))),
        ?assertEqual({ok, []}, ex_esdb:read_all(S, 7, 10, forward))
    end).

read_type_test() ->
    with_store(fun(S) ->
        {ok, _} = ex_esdb:append(S, <<"a">>, any,
                                 [ev(<<"x">>, <<"1">>), ev(<<"y">>, <<"2">>),
                                  ev(<<"x">>, <<"3">>)]),
        {ok, _} = ex_esdb:append(S, <<"b">>, any,
                                 [ev(<<"y">>, <<"4">>), ev(<<"x">>, <<"5">>)]),
        Xs = ex_esdb:read_type(S, <<"x">>, 0, 10),
        ?assertEqual([<<"1">>, <<"3">>, <<"5">>], datas(Xs)),
        ?assertEqual([1, 3, 5], positions(Xs)),
        ?assertEqual([<<"2">>, <<"4">>],
                     datas(ex_esdb:read_type(S, <<"y">>, 0, 10))),
        %% paging: from the position after the last one seen
        ?assertEqual([1, 3], positions(ex_esdb:read_type(S, <<"x">>, 0, 2))),
        ?assertEqual([5], positions(ex_esdb:read_type(S, <<"x">>, 4, 2))),
        ?assertEqual({ok, []}, ex_esdb:read_type(S, <<"unknown">>, 0, 10))
    end).

%% One page holds at most 10,000 events and says where the next starts;
%% the reads that return everything page on past it.
read_cap_test_() ->
    {timeout, 120, fun() ->
        with_store(fun(S) ->
            {ok, _} = ex_esdb:append(S, <<"s">>, any, numbered(10000)),
            {ok, _} = ex_esdb:append(S, <<"s">>, any, numbered(1)),
            {ok, Page, 10001} = ex_esdb:read_all_page(S, 0, 20000, forward),
            ?assertEqual(10000, length(Page)),
            {ok, SPage, 10001} =
                ex_esdb:read_stream_page(S, <<"s">>, 0, 20000, forward),
            ?assertEqual(10000, length(SPage)),
            ?assertEqual(lists:seq(1, 10001),
                         positions(ex_esdb:read_all(S, 0, 20000, forward))),
            ?assertEqual(lists:seq(1, 10001),
                         versions(ex_esdb:read_stream(S, <<"s">>, 0, 20000,
                                                      forward))),
            ?assertEqual(10001, length(element(2, ex_esdb:read_type(
                                                    S, <<"numbered">>, 0,
                                                    20000)))),
            ?assertEqual([10001],
                         positions(ex_esdb:read_all(S, 10001, 20000, forward)))
        end)
    end}.

%% A page cut short by max_read_bytes is not the end: Next says where
%% to go on, and the reads that return everything do.
read_pages_cut_by_bytes_test() ->
    with_store(#{max_read_bytes => 100}, fun(S) ->
        Data = binary:copy(<<"x">>, 40),
        {ok, _} = ex_esdb:append(S, <<"s">>, any,
                                 [ev(<<"t">>, Data) || _ <- lists:seq(1, 7)]),
        %% 40 bytes of data + 1 of id + 1 of type: two fit in 100
        {ok, P1, 3} = ex_esdb:read_stream_page(S, <<"s">>, 1, 10, forward),
        ?assertEqual([1, 2], versions({ok, P1})),
        {ok, [_, _], 5} = ex_esdb:read_all_page(S, 3, 10, forward),
        {ok, [_, _], 3} = ex_esdb:read_type_page(S, <<"t">>, 1, 10),
        {ok, [_, _], 5} = ex_esdb:read_stream_page(S, <<"s">>, 7, 10,
                                                   backward),
        {ok, [_], eof} = ex_esdb:read_stream_page(S, <<"s">>, 7, 10, forward),
        {ok, [], eof} = ex_esdb:read_all_page(S, 8, 10, forward),
        ?assertEqual(lists:seq(1, 7),
                     versions(ex_esdb:read_stream(S, <<"s">>, 0, 100,
                                                  forward))),
        ?assertEqual(lists:seq(7, 1, -1),
                     positions(ex_esdb:read_all(S, 1 bsl 64 - 1, 100,
                                                backward))),
        ?assertEqual(lists:seq(1, 7),
                     positions(ex_esdb:read_type(S, <<"t">>, 0, 100))),
        ?assertEqual([1, 2, 3],
                     versions(ex_esdb:read_stream(S, <<"s">>, 0, 3, forward)))
    end),
    ?assertEqual({error, {invalid_option, max_read_bytes}},
                 ex_esdb:open("/nonexistent", #{max_read_bytes => 0})).

%% ---- streams ------------------------------------------------------------

delete_stream_test() ->
    with_store(fun(S) ->
        {ok, _} = ex_esdb:append(S, <<"s">>, any, numbered(2)),
        {ok, _} = ex_esdb:append(S, <<"keep">>, any, numbered(1)),
        ?assertEqual({error, stream_not_found},
                     ex_esdb:delete_stream(S, <<"absent">>, any)),
        ?assertEqual({error, wrong_expected_version},
                     ex_esdb:delete_stream(S, <<"s">>, 1)),
        ?assert(ex_esdb:stream_exists(S, <<"s">>)),
        ?assertEqual(ok, ex_esdb:delete_stream(S, <<"s">>, 2)),
        D = {error, stream_deleted},
        ?assertEqual(D, ex_esdb:read_stream(S, <<"s">>, 0, 10, forward)),
        ?assertEqual(D, ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>)])),
        ?assertEqual(D, ex_esdb:stream_version(S, <<"s">>)),
        ?assertEqual(D, ex_esdb:delete_stream(S, <<"s">>, any)),
        ?assertNot(ex_esdb:stream_exists(S, <<"s">>)),
        ?assertEqual({ok, [<<"keep">>]}, ex_esdb:streams(S)),
        ?assertEqual({ok, [#{stream_id => <<"keep">>, version => 1,
                             deleted => false},
                           #{stream_id => <<"s">>, version => 2,
                             deleted => true}]},
                     ex_esdb:list_streams(S, undefined, 10)),
        %% its events stay in $all
        ?assertEqual([1, 2, 3], positions(ex_esdb:read_all(S, 0, 10, forward)))
    end).

stream_exists_test() ->
    with_store(fun(S) ->
        ?assertNot(ex_esdb:stream_exists(S, <<"s">>)),
        {ok, _} = ex_esdb:append(S, <<"s">>, any, [ev(<<"t">>)]),
        ?assert(ex_esdb:stream_exists(S, <<"s">>)),
        ?assertNot(ex_esdb:stream_exists(S, <<"S">>)),
        %% ids that cannot name a stream do not exist (as in Elixir)
        ?assertNot(ex_esdb:stream_exists(S, <<"$all">>)),
        ?assertNot(ex_esdb:stream_exists(S, <<>>))
    end).

streams_paging_test_() ->
    {timeout, 60, fun() ->
        with_store(fun(S) ->
            N = 2345,
            Ids = [iolist_to_binary(io_lib:format("s~5..0b", [I]))
                   || I <- lists:seq(1, N)],
            Self = self(),
            %% queued concurrently: the writer commits them in groups
            [spawn_link(fun() ->
                 Self ! {appended, ex_esdb:append(S, Id, no_stream,
                                                  [ev(<<"t">>)])}
             end) || Id <- Ids],
            [receive {appended, R} -> ?assertMatch({ok, _}, R) end
             || _ <- Ids],
            ?assertEqual({ok, Ids}, ex_esdb:streams(S)),
            {ok, P1} = ex_esdb:list_streams(S, undefined, 3),
            ?assertEqual(lists:sublist(Ids, 3),
                         [Id || #{stream_id := Id} <- P1]),
            {ok, P2} = ex_esdb:list_streams(S, lists:nth(3, Ids), 3),
            ?assertEqual(lists:sublist(Ids, 4, 3),
                         [Id || #{stream_id := Id} <- P2]),
            ?assertEqual({ok, []}, ex_esdb:list_streams(S, lists:last(Ids), 3)),
            %% a cursor between ids
            {ok, [#{stream_id := <<"s00002">>}]} =
                ex_esdb:list_streams(S, <<"s00001x">>, 1)
        end)
    end}.

%% ---- snapshots ----------------------------------------------------------

snapshots_test() ->
    with_store(fun(S) ->
        U = <<"agg-1">>,
        ?assertEqual({error, snapshot_not_found}, ex_esdb:get_snapshot(S, U)),
        ?assertEqual(ok, ex_esdb:delete_snapshot(S, U)),
        ?assertEqual(ok, ex_esdb:put_snapshot(S, U, 3, <<"Acct">>, <<"d3">>,
                                              <<"m3">>)),
        ?assertMatch({ok, #{source_uuid := U, source_version := 3,
                            source_type := <<"Acct">>, data := <<"d3">>,
                            metadata := <<"m3">>}},
                     ex_esdb:get_snapshot(S, U)),
        {ok, #{created_us := T}} = ex_esdb:get_snapshot(S, U),
        ?assert(is_integer(T) andalso T > 0),
        ?assertEqual(ok, ex_esdb:put_snapshot(S, U, 7, <<"Acct">>, <<"d7">>,
                                              <<>>)),
        ?assertMatch({ok, #{source_version := 7, data := <<"d7">>,
                            metadata := <<>>}},
                     ex_esdb:get_snapshot(S, U)),
        ?assertMatch({ok, #{snapshots := 1}}, ex_esdb:stats(S)),
        ?assertEqual(ok, ex_esdb:delete_snapshot(S, U)),
        ?assertEqual({error, snapshot_not_found}, ex_esdb:get_snapshot(S, U)),
        ?assertEqual(ok, ex_esdb:delete_snapshot(S, U))
    end).

%% This API reads and writes bytes: a snapshot the Elixir API wrote as a
%% term reads back as its bytes, and bytes that look like a term stay
%% bytes.
snapshot_payloads_are_bytes_test() ->
    with_store(fun(S) ->
        Etf = term_to_binary(#{looks => like_a_term}),
        Ref = make_ref(),
        ok = ex_esdb_nif:snapshot_put(S, Ref, <<"t">>, 1, <<"T">>,
                                      {term, Etf}, Etf),
        receive {Ref, ok} -> ok after 5000 -> error(timeout) end,
        ?assertMatch({ok, #{data := Etf, metadata := Etf}},
                     ex_esdb:get_snapshot(S, <<"t">>)),
        %% the NIF itself says which one it wrote as a term
        ?assertMatch({ok, {_, 1, _, {term, Etf}, Etf, _}},
                     ex_esdb_nif:snapshot_get(S, <<"t">>))
    end).

%% ---- checkpoints --------------------------------------------------------

checkpoints_test() ->
    with_store(fun(S) ->
        ?assertEqual({error, subscription_not_found},
                     ex_esdb:get_checkpoint(S, <<"c">>)),
        ?assertEqual({error, subscription_not_found},
                     ex_esdb:delete_checkpoint(S, <<"c">>)),
        ?assertEqual({ok, []}, ex_esdb:checkpoints(S)),
        ?assertEqual(ok, ex_esdb:put_checkpoint(S, <<"c">>, 5, <<"def">>)),
        ?assertMatch({ok, #{name := <<"c">>, checkpoint := 5,
                            definition := <<"def">>}},
                     ex_esdb:get_checkpoint(S, <<"c">>)),
        ?assertEqual(ok, ex_esdb:put_checkpoint(S, <<"c">>, 9, <<"def2">>)),
        {ok, #{checkpoint := 9, definition := <<"def2">>, updated_us := T}} =
            ex_esdb:get_checkpoint(S, <<"c">>),
        ?assert(T > 0),
        ok = ex_esdb:put_checkpoint(S, <<"b">>, 1, <<>>),
        ?assertMatch({ok, [#{name := <<"b">>, checkpoint := 1},
                           #{name := <<"c">>, checkpoint := 9}]},
                     ex_esdb:checkpoints(S)),
        ?assertEqual(ok, ex_esdb:delete_checkpoint(S, <<"c">>)),
        ?assertEqual({error, subscription_not_found},
                     ex_esdb:get_checkpoint(S, <<"c">>)),
        ?assertMatch({ok, [#{name := <<"b">>}]}, ex_esdb:checkpoints(S))
    end).

checkpoints_paging_test_() ->
    {timeout, 60, fun() ->
        with_store(fun(S) ->
            Names = [iolist_to_binary(io_lib:format("sub-~5..0b", [I]))
                     || I <- lists:seq(1, 2001)],
            Self = self(),
            [spawn_link(fun() ->
                 Self ! {put, ex_esdb:put_checkpoint(S, N, 1, N)}
             end) || N <- Names],
            [receive {put, R} -> ?assertEqual(ok, R) end || _ <- Names],
            {ok, All} = ex_esdb:checkpoints(S),
            ?assertEqual(Names, [N || #{name := N} <- All]),
            ?assertEqual(Names, [D || #{definition := D} <- All])
        end)
    end}.

%% ---- maintenance --------------------------------------------------------

stats_test() ->
    with_store(fun(S) ->
        ?assertMatch({ok, #{events := 0, streams := 0}}, ex_esdb:stats(S)),
        {ok, _} = ex_esdb:append(S, <<"a">>, any, [ev(<<"x">>), ev(<<"y">>)]),
        {ok, _} = ex_esdb:append(S, <<"b">>, any, [ev(<<"x">>)]),
        ok = ex_esdb:put_checkpoint(S, <<"c">>, 1, <<>>),
        {ok, Stats} = ex_esdb:stats(S),
        ?assertMatch(#{events := 3, streams := 2, event_types := 2,
                       snapshots := 0, checkpoints := 1}, Stats),
        ?assertEqual(lists:sort([events, streams, event_types, snapshots,
                                 checkpoints, bytes_used, map_size, commits,
                                 store_failed, subscribers]),
                     lists:sort(maps:keys(Stats))),
        ?assertEqual(nil, maps:get(store_failed, Stats)),
        ?assertEqual(0, maps:get(subscribers, Stats)),
        ?assert(maps:get(commits, Stats) >= 1),
        ?assert(maps:get(bytes_used, Stats) > 0),
        ?assert(maps:get(map_size, Stats) >= maps:get(bytes_used, Stats))
    end).

verify_test() ->
    with_store(fun(S) ->
        ?assertEqual(ok, ex_esdb:verify(S)),
        {ok, _} = ex_esdb:append(S, <<"a">>, any, numbered(100)),
        ok = ex_esdb:delete_stream(S, <<"a">>, any),
        ?assertEqual(ok, ex_esdb:verify(S))
    end).

backup_test() ->
    with_store(fun(S, Dir) ->
        {ok, _} = ex_esdb:append(S, <<"a">>, any, numbered(10)),
        ok = ex_esdb:put_snapshot(S, <<"u">>, 10, <<"T">>, <<"snap">>, <<>>),
        Dest = filename:join(Dir, "backup"),
        ?assertEqual(ok, ex_esdb:backup(S, Dest)),
        %% the source goes on; the copy is as of the backup
        {ok, _} = ex_esdb:append(S, <<"a">>, any, numbered(1)),
        {ok, B} = ex_esdb:open(list_to_binary(Dest), #{create => false}),
        try
            ?assertEqual(bins(1, 10),
                         datas(ex_esdb:read_stream(B, <<"a">>, 0, 100,
                                                   forward))),
            ?assertMatch({ok, #{data := <<"snap">>}},
                         ex_esdb:get_snapshot(B, <<"u">>)),
            ?assertEqual(ok, ex_esdb:verify(B))
        after
            ok = ex_esdb:close(B)
        end,
        %% the destination must be empty
        ?assertMatch({error, _}, ex_esdb:backup(S, Dest))
    end).

%% ---- UUIDs --------------------------------------------------------------

uuid_v4_test() ->
    Ids = [ex_esdb:uuid_v4() || _ <- lists:seq(1, 1000)],
    ?assertEqual(1000, length(lists:usort(Ids))),
    [?assertMatch(<<_:48, 4:4, _:12, 2:2, _:62>>, Id) || Id <- Ids].

uuid_text_test() ->
    Raw = <<16#8e, 16#4b, 16#1c, 16#2a, 16#0d, 16#3f, 16#4a, 16#5b, 16#9c,
            16#6d, 16#7e, 16#8f, 16#90, 16#a1, 16#b2, 16#c3>>,
    Text = <<"8e4b1c2a-0d3f-4a5b-9c6d-7e8f90a1b2c3">>,
    ?assertEqual(Text, ex_esdb:uuid_to_string(Raw)),
    ?assertEqual({ok, Raw}, ex_esdb:uuid_from_string(Text)),
    ?assertEqual({ok, Raw}, ex_esdb:uuid_from_string(string:uppercase(Text))),
    ?assertEqual({ok, Raw}, ex_esdb:uuid_from_string(binary_to_list(Text))),
    ?assertEqual(<<0:128>>,
                 element(2, ex_esdb:uuid_from_string(
                              ex_esdb:uuid_to_string(<<0:128>>)))),
    Id = ex_esdb:uuid_v4(),
    ?assertEqual({ok, Id}, ex_esdb:uuid_from_string(ex_esdb:uuid_to_string(Id))),
    [?assertEqual({error, invalid_uuid}, ex_esdb:uuid_from_string(Bad))
     || Bad <- [<<"8e4b1c2a0d3f4a5b9c6d7e8f90a1b2c3">>,
                <<"8e4b1c2a-0d3f-4a5b-9c6d-7e8f90a1b2cg">>,
                <<"8e4b1c2a-0d3f-4a5b-9c6d-7e8f90a1b2c">>,
                <<>>, "x", [16#1F600]]].

%% ---- transient subscriptions --------------------------------------------

subscribe_test() ->
    with_store(
      fun(S) ->
              {ok, _} = ex_esdb:append(S, <<"before">>, any, [ev(<<"t">>)]),
              {ok, All} = ex_esdb:subscribe(S, all),
              {ok, _} = ex_esdb:subscribe(S, {stream, <<"a">>}),
              {ok, _} = ex_esdb:append(S, <<"a">>, any,
                                       [ev(<<"t">>, <<"x">>)]),
              {ok, _} = ex_esdb:append(S, <<"b">>, any, [ev(<<"t">>)]),
              Got = receive_events(4),
              ?assertEqual([2, 2, 3],
                           lists:sort([P || #{position := P} <- Got])),
              ?assertMatch([#{stream_id := <<"a">>, data := <<"x">>,
                              event_number := 1} | _], Got),
              ok = ex_esdb:unsubscribe(S, All),
              ?assertEqual({error, subscription_not_found},
                           ex_esdb:unsubscribe(S, All)),
              ?assertEqual({error, {invalid_source, {stream, <<>>}}},
                           ex_esdb:subscribe(S, {stream, <<>>})),
              ?assertEqual({error, {invalid_subscriber, nope}},
                           ex_esdb:subscribe(S, all, nope)),
              ?assertEqual({error, {invalid_subscription, x}},
                           ex_esdb:unsubscribe(S, x))
      end).

subscription_credit_test() ->
    with_store(
      fun(S) ->
              {ok, Sub} = ex_esdb:subscribe(S, all, self(), #{credit => 2}),
              {ok, _} = ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>)]),
              ?assertMatch([_], receive_events(1)),
              ok = ex_esdb:grant(S, Sub, 1),
              {ok, _} = ex_esdb:append(S, <<"a">>, any,
                                       [ev(<<"t">>), ev(<<"t">>)]),
              ?assertMatch([_, _], receive_events(1)),
              {ok, _} = ex_esdb:append(S, <<"a">>, any, [ev(<<"t">>)]),
              receive
                  {subscription_overflow, Sub, 4} -> ok
              after 2000 -> error(no_overflow)
              end,
              ?assertEqual({error, subscription_not_found},
                           ex_esdb:grant(S, Sub, 1)),
              ?assertEqual({error, {invalid_credit, 0}},
                           ex_esdb:subscribe(S, all, self(), #{credit => 0})),
              ?assertEqual({error, {invalid_option, creditt}},
                           ex_esdb:subscribe(S, all, self(), #{creditt => 2})),
              {ok, Down} = ex_esdb:subscribe(S, all),
              ok = ex_esdb:close(S),
              receive
                  {subscription_down, Down, closed} -> ok
              after 2000 -> error(no_down)
              end
      end).

%% The events of up to N messages, or fewer when none comes for 300 ms.
receive_events(0) -> [];
receive_events(N) ->
    receive {events, Es} -> Es ++ receive_events(N - 1)
    after 300 -> []
    end.
