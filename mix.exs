defmodule Mix.Tasks.Compile.ExEsdbNative do
  @moduledoc false
  # Builds the NIF and the CLI with the Makefile (no hex plugin is needed).
  # Runs in this project's directory, also when ex_esdb is a dependency.
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    case System.cmd("make", ["nif"], cd: __DIR__, stderr_to_stdout: true) do
      {_, 0} ->
        {:ok, []}

      {out, status} ->
        Mix.shell().error(out)
        Mix.raise("make nif failed (exit #{status}); `make deps` installs what it needs")
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
      deps: [],
      test_paths: ["test"],
      docs: [main: "ExESDB"]
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
