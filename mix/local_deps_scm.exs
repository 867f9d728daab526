defmodule ExESDB.LocalDepsSCM do
  @moduledoc false
  # Only loaded when COMMANDED_PATH is set (see mix.exs). Commanded's mix.exs
  # names its dependencies by version only ({:backoff, "~> 1.1"}); without
  # Hex, Mix cannot even load such a dependency ("Could not find an SCM"),
  # and overriding it does not help because loading fails first. This SCM
  # accepts every version-only dependency and points it at a local checkout,
  # <deps dir>/<app>, so the whole tree builds offline. Everything else is
  # Mix's own path SCM; Mix still checks each version requirement against
  # the checkout's .app version.

  @behaviour Mix.SCM

  @doc "Accept version-only dependencies, resolved under `dir`."
  def register(dir) do
    :persistent_term.put({__MODULE__, :dir}, Path.expand(dir))
    # Ahead of Hex (when installed), so nothing is fetched.
    unless __MODULE__ in Mix.SCM.available(), do: Mix.SCM.prepend(__MODULE__)
    :ok
  end

  @impl true
  def fetchable?, do: false

  @impl true
  def format(opts), do: "#{opts[:path]} (local)"

  @impl true
  def format_lock(_opts), do: nil

  @impl true
  def accepts_options(app, opts) do
    if Enum.any?([:path, :git, :github, :in_umbrella], &Keyword.has_key?(opts, &1)) do
      nil
    else
      dir = Path.join(:persistent_term.get({__MODULE__, :dir}), Atom.to_string(app))
      Mix.SCM.Path.accepts_options(app, Keyword.put(opts, :path, dir))
    end
  end

  @impl true
  defdelegate checked_out?(opts), to: Mix.SCM.Path
  @impl true
  defdelegate lock_status(opts), to: Mix.SCM.Path
  @impl true
  defdelegate equal?(opts1, opts2), to: Mix.SCM.Path
  @impl true
  defdelegate managers(opts), to: Mix.SCM.Path
  @impl true
  defdelegate checkout(opts), to: Mix.SCM.Path
  @impl true
  defdelegate update(opts), to: Mix.SCM.Path
end
