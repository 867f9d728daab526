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

    assert_raise ArgumentError, ~r/max_stream_id/, fn ->
      Options.resolve(limits: [max_stream_id: 0])
    end

    System.put_env("EX_ESDB_TIMEOUT", "soon")
    assert_raise ArgumentError, ~r/EX_ESDB_TIMEOUT="soon"/, fn -> Options.resolve() end
    System.delete_env("EX_ESDB_TIMEOUT")
    System.put_env("EX_ESDB_DURABILITY", "maybe")
    assert_raise ArgumentError, ~r/:durability: :maybe \(from env\)/, fn -> Options.resolve() end
  end
end
