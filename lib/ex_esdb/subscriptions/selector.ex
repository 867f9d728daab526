defmodule ExESDB.Subscriptions.Selector do
  @moduledoc false
  # A selector ({type, value}) as the emitter topic it listens to and the
  # filter Elixir applies on top (patterns and payloads, which C cannot
  # evaluate).

  alias ExESDB.EventRecord

  @type t ::
          {:by_stream, String.t()}
          | {:by_event_type, String.t()}
          | {:by_event_pattern, map()}
          | {:by_event_payload, map()}

  @doc "The NIF source and the Elixir filter (nil: none) of a selector."
  @spec resolve(atom(), term()) :: {:ok, term(), nil | {atom(), map()}} | {:error, term()}
  def resolve(:by_stream, "$all"), do: {:ok, :all, nil}
  def resolve(:by_stream, id) when is_binary(id) and id != "", do: {:ok, {:stream, id}, nil}
  def resolve(:by_event_type, t) when is_binary(t) and t != "", do: {:ok, {:type, t}, nil}
  def resolve(:by_event_pattern, p) when is_map(p), do: {:ok, :all, {:pattern, p}}
  def resolve(:by_event_payload, p) when is_map(p), do: {:ok, :all, {:payload, p}}
  def resolve(type, selector), do: {:error, {:invalid_selector, {type, selector}}}

  @doc "Whether a record passes the filter."
  @spec match?(nil | {atom(), map()}, EventRecord.t()) :: boolean()
  def match?(nil, _record), do: true
  def match?({:pattern, pattern}, record), do: subset?(pattern, Map.from_struct(record))
  def match?({:payload, pattern}, %{data: data}) when is_map(data), do: subset?(pattern, data)
  def match?({:payload, _}, _record), do: false

  # Every key of `pattern` is in `value` with an equal value; nested maps
  # match as subsets too.
  defp subset?(pattern, value) when is_map(value) do
    Enum.all?(pattern, fn {k, v} ->
      case Map.fetch(value, k) do
        {:ok, actual} when is_map(v) and is_map(actual) and not is_struct(v) ->
          subset?(v, actual)

        {:ok, actual} ->
          actual == v

        :error ->
          false
      end
    end)
  end
end
