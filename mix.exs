defmodule Mix.Tasks.Compile.ExEsdbNative do
  @moduledoc false
  # Builds the NIF and the CLI with the Makefile (no hex plugin is needed).
  # Runs in this project's directory, also when ex_esdb is a dependency.
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    case System.cmd("make", ["nif"], cd: __DIR__, stderr_to_stdout: true) do
      {_, 0} ->
        erlang_docs()
        {:ok, []}

      {out, status} ->
        Mix.shell().error(out)
        Mix.raise("make nif failed (exit #{status}); `make deps` installs what it needs")
    end
  end

  # The Erlang modules' EDoc as doc chunks beside the app's ebin, where
  # `h :ex_esdb` (IEx) and `h(ex_esdb)` (the Erlang shell) look for them.
  @erlang_sources ["src/ex_esdb.erl", "src/ex_esdb_backend.erl", "src/ex_esdb_nif.erl"]
  defp erlang_docs do
    sources = Enum.map(@erlang_sources, &Path.join(__DIR__, &1))
    dir = Path.join(Mix.Project.app_path(), "doc")
    chunk = Path.join([dir, "chunks", "ex_esdb.chunk"])

    if Mix.Utils.stale?(sources, [chunk]) do
      opts = [doclet: :edoc_doclet_chunks, layout: :edoc_layout_chunks, preprocess: true]

      :ok =
        :edoc.files(
          Enum.map(sources, &String.to_charlist/1),
          [dir: String.to_charlist(dir)] ++ opts
        )
    end
  end
end

defmodule ExESDB.MixProject do
  use Mix.Project

  def project do
    [
      app: :ex_esdb,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:ex_esdb_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      test_paths: ["test"],
      docs: [main: "ExESDB"]
    ] ++ commanded_project(Mix.env())
  end

  def application do
    [extra_applications: [:logger, :crypto]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"] ++ commanded_test_paths()
  defp elixirc_paths(_), do: ["lib"]

  # Optional, for `make test-commanded` only: with COMMANDED_PATH set to a
  # Commanded 1.4.9 checkout (its deps telemetry, telemetry_registry,
  # backoff and jason as sibling directories, or under COMMANDED_DEPS_PATH),
  # Commanded and Jason become dependencies, resolved offline by
  # mix/local_deps_scm.exs, and Commanded's adapter test cases and the
  # example application (examples/bank) are compiled for test/commanded.
  # Unset (CI), none of this exists: no deps at all.
  defp deps do
    cond do
      commanded_path() ->
        [{:commanded, path: commanded_path()}, {:jason, "~> 1.4"}]

      # ex_esdb as another application's dependency: Commanded, when that
      # application has it, compiles first, so the adapter declares its
      # behaviour (with callback checks) in either order of the deps. Not
      # at the top level, where Mix would fetch it, and only where a
      # version-only dependency can be loaded at all (Hex, in a real
      # application), or Mix stops at it even when nothing needs it.
      as_dependency?() and version_only_deps_load?() ->
        [{:commanded, "~> 1.4", optional: true}]

      true ->
        []
    end
  end

  # While a project's config is read, the project stack's top is the
  # project that depends on it, or nothing at the top level.
  defp as_dependency?, do: Mix.Project.get() not in [nil, __MODULE__]

  defp version_only_deps_load?,
    do: Enum.any?(Mix.SCM.available(), &(&1.accepts_options(:commanded, []) != nil))

  defp commanded_project(env) do
    if commanded_path() do
      # Its own build tree, so _build/<env> of the plain build stays as is;
      # consolidation off because the test cases @derive Jason.Encoder.
      [build_path: "_build/commanded"] ++
        if(env == :test, do: [consolidate_protocols: false], else: [])
    else
      []
    end
  end

  defp commanded_test_paths do
    if path = commanded_path() do
      [
        "test/commanded/support",
        "examples/bank/lib",
        Path.join(path, "test/support/shared_test_case.ex"),
        Path.join(path, "test/event_store/support")
      ]
    else
      []
    end
  end

  defp commanded_path do
    case System.get_env("COMMANDED_PATH") do
      nil -> nil
      "" -> nil
      path -> Path.expand(path, __DIR__)
    end
  end
end

if commanded = System.get_env("COMMANDED_PATH") do
  if commanded != "" do
    Code.require_file("mix/local_deps_scm.exs", __DIR__)

    ExESDB.LocalDepsSCM.register(
      System.get_env("COMMANDED_DEPS_PATH") || Path.dirname(Path.expand(commanded, __DIR__))
    )

    # backoff is a rebar3 project; Debian's rebar3 builds it.
    if !System.get_env("MIX_REBAR3") && System.find_executable("rebar3") do
      System.put_env("MIX_REBAR3", System.find_executable("rebar3"))
    end
  end
end
