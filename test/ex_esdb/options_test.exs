defmodule ExESDB.OptionsTest do
  # Touches the OS environment and application env: not async.
  use ExUnit.Case, async: false
  doctest ExESDB.Options

  alias ExESDB.Options

  setup do
    on_exit(fn ->
      for var <-
            ~w(EX_ESDB_DATA_DIR EX_ESDB_STORE_ID EX_ESDB_TIMEOUT EX_ESDB_SEED_NODES EX_ESDB_DURABILITY EX_ESDB_DB_TYPE),
          do: System.delete_env(var)

      for key <- Options.keys(), do: Application.delete_env(:ex_esdb, key)
      Application.delete_env(:my_app, :ex_esdb)
    end)
  end

  test "defaults" do
    o = Options.resolve()
    assert o.data_dir == "data" and o.store_id == :ex_esdb and o.db_type == :single
    assert o.timeout == 10_000 and o.durability == :sync
    assert o.serializer == ExESDB.Serializer.Term
    assert o.file_mode == 0o600
    assert Options.store_path(o) == "data/ex_esdb"
  end

  test "config, then environment, then explicit options" do
    Application.put_env(:ex_esdb, :data_dir, "/from/config")
    Application.put_env(:ex_esdb, :timeout, 5_000)
    assert %{data_dir: "/from/config", timeout: 5_000} = Options.resolve()
    System.put_env("EX_ESDB_DATA_DIR", "/from/env")
    System.put_env("EX_ESDB_TIMEOUT", "7000")
    System.put_env("EX_ESDB_SEED_NODES", "a@h1, b@h2")
    System.put_env("EX_ESDB_STORE_ID", "envstore")
    o = Options.resolve()
    assert o.data_dir == "/from/env" and o.timeout == 7000
    assert o.seed_nodes == [:a@h1, :b@h2] and o.store_id == :envstore
    assert %{data_dir: "/explicit"} = Options.resolve(data_dir: "/explicit")
  end

  test "otp_app reads config :otp_app, :ex_esdb" do
    Application.put_env(:my_app, :ex_esdb, store_id: :mine, durability: :strict)
    assert %{store_id: :mine, durability: :strict} = Options.resolve(otp_app: :my_app)
  end

  test "durability: :sync is the default; :no_meta_sync is an opt-in, :strict its old name" do
    assert Options.resolve([]).durability == :sync

    for mode <- [:sync, :strict, :no_meta_sync, :nosync],
        do: assert(Options.resolve(durability: mode).durability == mode)
  end

  test "invalid values name the key and the value" do
    assert_raise ArgumentError, ~r/:timeout: -5/, fn -> Options.resolve(timeout: -5) end

    assert_raise ArgumentError, ~r/:durability: :sometimes/, fn ->
      Options.resolve(durability: :sometimes)
    end

    assert_raise ArgumentError, ~r/unknown ExESDB option :colour/, fn ->
      Options.resolve(colour: :blue)
    end

    assert_raise ArgumentError, ~r/:file_mode: 256/, fn -> Options.resolve(file_mode: 0o400) end
    assert %{file_mode: 0o640} = Options.resolve(file_mode: 0o640)

    assert_raise ArgumentError, ~r/:cluster/, fn -> Options.resolve(db_type: :cluster) end

    # Without raft built (build/raft), :cluster names what is missing and how
    # to get it.
    raft_built = File.exists?(Path.expand("../../build/raft/lib/libraft.a", __DIR__))

    case :ex_esdb_nif.cluster_support() do
      true ->
        assert raft_built

      {false, why} ->
        refute raft_built
        assert why =~ "raft 0.22.1"
        assert why =~ "make raft"

        assert_raise ArgumentError, ~r/no cluster support: raft 0.22.1/, fn ->
          Options.resolve(db_type: :cluster)
        end
    end

    assert_raise ArgumentError, ~r/max_stream_id/, fn ->
      Options.resolve(limits: [max_stream_id: 0])
    end

    System.put_env("EX_ESDB_TIMEOUT", "soon")
    assert_raise ArgumentError, ~r/EX_ESDB_TIMEOUT="soon"/, fn -> Options.resolve() end
    System.delete_env("EX_ESDB_TIMEOUT")
    System.put_env("EX_ESDB_DURABILITY", "maybe")

    assert_raise ArgumentError, ~r/:durability: :maybe \(from EX_ESDB_DURABILITY\)/, fn ->
      Options.resolve()
    end
  end
end

defmodule ExESDB.OptionsValuesTest do
  # Items 9-12 and 18 of issue 10: every value resolves or raises at once,
  # names are validated before they become atoms or paths, unknown keys
  # from every source are refused naming the source.
  use ExUnit.Case, async: false

  alias ExESDB.Options

  @vars ~w(EX_ESDB_DATA_DIR EX_ESDB_STORE_ID EX_ESDB_TIMEOUT EX_ESDB_SEED_NODES
           EX_ESDB_DURABILITY EX_ESDB_DB_TYPE EX_ESDB_PUB_SUB EX_ESDB_MAP_SIZE
           EX_ESDB_DURABILTY EX_ESDB_BACKEND EX_ESDB_CNODE EX_ESDB_CNODE_NAME
           EX_ESDB_CNODE_LISTEN EX_ESDB_CNODE_COOKIE EX_ESDB_CNODE_CLUSTER)

  setup do
    on_exit(fn ->
      for var <- @vars, do: System.delete_env(var)
      for key <- [:durabilty | Options.keys()], do: Application.delete_env(:ex_esdb, key)
      Application.delete_env(:my_app, :ex_esdb)
    end)
  end

  # Resolve in another process and give it a bounded time: a value that
  # makes resolve loop fails the test instead of hanging it.
  defp resolve_within(opts, ms \\ 2_000) do
    task =
      Task.async(fn ->
        try do
          {:ok, Options.resolve(opts)}
        rescue
          e in ArgumentError -> {:raised, Exception.message(e)}
        end
      end)

    case Task.yield(task, ms) || Task.shutdown(task, :brutal_kill) do
      {:ok, result} -> result
      _ -> flunk("Options.resolve(#{inspect(opts)}) did not return within #{ms} ms")
    end
  end

  # Values the core refuses at open (it answered {:cannot_open_store,
  # path, :invalid_option}, naming neither key nor value) raise here.
  test "values past the store's bounds raise naming the key" do
    for {limits, name} <- [
          {[max_stream_id: 65_536], "max_stream_id"},
          {[max_event_type: 65_536], "max_event_type"},
          {[max_key: 65_536], "max_key"},
          {[max_event_bytes: 2 ** 32], "max_event_bytes"},
          {[max_append_bytes: 2 ** 32], "max_append_bytes"},
          {[max_append_events: 2 ** 32], "max_append_events"},
          {[max_read_bytes: 2 ** 64], "max_read_bytes"},
          {[max_queue_bytes: 2 ** 64], "max_queue_bytes"}
        ] do
      assert_raise ArgumentError, ~r/#{name}/, fn -> Options.resolve(limits: limits) end
    end

    assert %{limits: [max_stream_id: 65_535, max_event_bytes: 4_294_967_295]} =
             Options.resolve(limits: [max_stream_id: 65_535, max_event_bytes: 4_294_967_295])

    assert_raise ArgumentError, ~r/:map_size/, fn -> Options.resolve(map_size: 2 ** 64) end
  end

  test "seed_nodes given as strings resolve at once (node names) or raise" do
    assert {:ok, %{seed_nodes: [:a@h1, :"b@h2.example"]}} =
             resolve_within(seed_nodes: ["a@h1", "b@h2.example"])

    assert {:raised, msg} = resolve_within(seed_nodes: ["not a node"])
    assert msg =~ ":seed_nodes" and msg =~ "not a node"
    assert {:raised, _} = resolve_within(seed_nodes: [1, :a@h1])
    assert {:raised, _} = resolve_within(seed_nodes: :a@h1)
  end

  test "every key with a wrong value raises at once" do
    for {key, bad} <- [
          data_dir: 42,
          store_id: "orders",
          db_type: :other,
          timeout: :soon,
          seed_nodes: [%{}],
          pub_sub: "PubSub",
          pub_sub: true,
          pub_sub: {Mod, "name"},
          durability: "sync",
          map_size: 1,
          serializer: "Term",
          limits: :none
        ] do
      assert {:raised, msg} = resolve_within([{key, bad}]), "#{key}: #{inspect(bad)}"
      assert msg =~ inspect(key)
    end
  end

  test "store_id must be a plain name: never a path outside data_dir" do
    for bad <- [:"../../x", :"a/b", :., :.., :"", :"with space", :".hidden"] do
      assert {:raised, msg} = resolve_within(store_id: bad)
      assert msg =~ ":store_id"
    end

    System.put_env("EX_ESDB_STORE_ID", "../../x")
    assert {:raised, msg} = resolve_within([])
    assert msg =~ "EX_ESDB_STORE_ID"
    System.delete_env("EX_ESDB_STORE_ID")

    for ok <- [:orders, :"orders-2", :"commanded_MyApp.App_x", :Orders_1] do
      assert {:ok, %{store_id: ^ok}} = resolve_within(store_id: ok)
    end
  end

  test "invalid environment values raise before any atom is made of them" do
    for {var, value} <- [
          {"EX_ESDB_STORE_ID", "no such store/../.."},
          {"EX_ESDB_DURABILITY", "durability_never_heard_of_7f3a"},
          {"EX_ESDB_DB_TYPE", "db_type_never_heard_of_7f3a"},
          {"EX_ESDB_PUB_SUB", "pub sub never heard of 7f3a"},
          {"EX_ESDB_SEED_NODES", "node never heard of 7f3a"}
        ] do
      System.put_env(var, value)
      assert {:raised, msg} = resolve_within([])
      assert msg =~ var, msg
      System.delete_env(var)
      # the atom does not exist: nothing was created from the value
      for piece <- [value | String.split(value, ",")] do
        assert_raise ArgumentError, fn -> String.to_existing_atom(String.trim(piece)) end
      end
    end
  end

  test "errors from the environment name the variable, not \"env\"" do
    System.put_env("EX_ESDB_DURABILITY", "maybe")
    assert {:raised, msg} = resolve_within([])
    assert msg =~ "EX_ESDB_DURABILITY" and msg =~ "maybe"
    refute msg =~ "(from env)"
  end

  test "unknown keys raise from every source, naming it" do
    Application.put_env(:ex_esdb, :durabilty, :nosync)
    assert {:raised, msg} = resolve_within([])
    assert msg =~ ":durabilty" and msg =~ "config :ex_esdb"
    Application.delete_env(:ex_esdb, :durabilty)

    Application.put_env(:my_app, :ex_esdb, durabilty: :nosync)
    assert {:raised, msg} = resolve_within(otp_app: :my_app)
    assert msg =~ ":durabilty" and msg =~ "config :my_app, :ex_esdb"
    Application.delete_env(:my_app, :ex_esdb)

    System.put_env("EX_ESDB_DURABILTY", "nosync")
    assert {:raised, msg} = resolve_within([])
    assert msg =~ "EX_ESDB_DURABILTY"
    System.delete_env("EX_ESDB_DURABILTY")

    assert {:raised, msg} = resolve_within(durabilty: :nosync)
    assert msg =~ ":durabilty" and msg =~ "ExESDB.System"
  end

  test "precedence: defaults < config < EX_ESDB_* < options given to ExESDB.System" do
    Application.put_env(:ex_esdb, :timeout, 1_000)
    Application.put_env(:ex_esdb, :durability, :strict)
    Application.put_env(:ex_esdb, :data_dir, "/from/config")
    System.put_env("EX_ESDB_TIMEOUT", "2000")
    System.put_env("EX_ESDB_DATA_DIR", "/from/env")

    assert {:ok, o} = resolve_within(data_dir: "/explicit")
    # explicit beats env beats config beats the default
    assert o.data_dir == "/explicit"
    assert o.timeout == 2_000
    assert o.durability == :strict
    assert o.map_size == 64 * 1024 * 1024
    # and the module doc says so
    {:docs_v1, _, _, _, %{"en" => doc}, _, _} = Code.fetch_docs(Options)
    assert doc =~ "options given to `ExESDB.System` win"
  end

  test "EX_ESDB_PUB_SUB names a module or a plain atom" do
    System.put_env("EX_ESDB_PUB_SUB", "MyApp.PubSub")
    assert {:ok, %{pub_sub: MyApp.PubSub}} = resolve_within([])
    System.put_env("EX_ESDB_PUB_SUB", "my_pubsub")
    assert {:ok, %{pub_sub: :my_pubsub}} = resolve_within([])
  end

  test "a serializer that is not a loaded ExESDB.Serializer stops start-up" do
    assert {:raised, msg} = resolve_within(serializer: NoSuchModule)
    assert msg =~ ":serializer" and msg =~ "NoSuchModule"
    # a module without the callbacks
    assert {:raised, _} = resolve_within(serializer: Enum)
    assert {:ok, _} = resolve_within(serializer: ExESDB.Serializer.Term)
  end

  test "the C node backend's options, from options and the environment" do
    o = Options.resolve()
    assert o.backend == :nif and o.cnode == nil and o.cnode_listen == "127.0.0.1"
    assert o.cnode_cookie == :node
    # a C node started elsewhere means the C node backend
    assert %{backend: :cnode, cnode: :esdb@h1} = Options.resolve(cnode: "esdb@h1")

    System.put_env("EX_ESDB_BACKEND", "cnode")
    System.put_env("EX_ESDB_CNODE_NAME", "mine@h2")
    System.put_env("EX_ESDB_CNODE_LISTEN", "10.0.0.2")
    System.put_env("EX_ESDB_CNODE_COOKIE", "/etc/esdb.cookie")
    o = Options.resolve()
    assert o.backend == :cnode and o.cnode_name == :mine@h2 and o.cnode_listen == "10.0.0.2"
    assert o.cnode_cookie == "/etc/esdb.cookie"
    System.put_env("EX_ESDB_CNODE_COOKIE", "node")
    assert Options.resolve().cnode_cookie == :node

    for bad <- [
          backend: :elsewhere,
          cnode: "no host",
          cnode_name: 7,
          cnode_listen: "::1",
          cnode_listen: "host",
          cnode_cookie: ""
        ] do
      assert {:raised, msg} = resolve_within([bad])
      assert msg =~ inspect(elem(bad, 0)), msg
    end

    # limits a C node would not apply
    assert {:raised, msg} = resolve_within(backend: :cnode, limits: [max_event_bytes: 10])
    assert msg =~ ":limits"

    System.put_env("EX_ESDB_CNODE", "not a node 7f3b")
    assert {:raised, msg} = resolve_within([])
    assert msg =~ "EX_ESDB_CNODE"
  end

  test "cnode_cluster: C node names, from options and the environment" do
    assert Options.resolve().cnode_cluster == []
    assert %{cnode_cluster: [:a@h, :b@h]} = Options.resolve(cnode_cluster: ["a@h", :b@h])
    System.put_env("EX_ESDB_CNODE_CLUSTER", "a@h, b@h")
    assert Options.resolve().cnode_cluster == [:a@h, :b@h]
    System.delete_env("EX_ESDB_CNODE_CLUSTER")
    assert {:raised, msg} = resolve_within(cnode_cluster: ["no host"])
    assert msg =~ ":cnode_cluster", msg
  end
end
