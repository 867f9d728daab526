defmodule ExESDB.EventRecord do
  @moduledoc """
  A stored event as reads return it.

  `event_number` is the event's version in its stream (1-based, as
  `stream_version`); `position` is its global position in `$all`
  (1-based, gap-free). `created_at` is a `DateTime` and `created_epoch`
  the same instant in microseconds since the Unix epoch.
  """

  @type t :: %__MODULE__{
          event_id: String.t(),
          event_type: String.t(),
          stream_id: String.t(),
          event_number: pos_integer(),
          stream_version: pos_integer(),
          position: pos_integer(),
          data: term(),
          metadata: term(),
          causation_id: String.t() | nil,
          correlation_id: String.t() | nil,
          created_at: DateTime.t(),
          created_epoch: non_neg_integer()
        }

  defstruct [
    :event_id,
    :event_type,
    :stream_id,
    :event_number,
    :stream_version,
    :position,
    :data,
    :metadata,
    :causation_id,
    :correlation_id,
    :created_at,
    :created_epoch
  ]

  @doc false
  # Records from the NIF's read tuples (read_records with `{module,
  # decode, :tuples}`): the map's values in the order of its keys, and
  # created_at as {year, month, day, hour, minute, second, microsecond},
  # one term per distinct time. Every value here is a variable, so the
  # compiler builds each map from a literal keys tuple that all records
  # share (a constant value would be folded into a literal map, and a map
  # updated from that gets keys of its own): a send or a garbage
  # collection copies no keys, and the NIF sorts none. The DateTime's
  # constants come from :persistent_term (literals too) for the same
  # reason; the events of one append share one DateTime.
  @spec from_tuples([tuple()]) :: [t()]
  def from_tuples(tuples), do: from_tuples(tuples, -1, nil, datetime_constants())

  defp from_tuples(
         [{struct, cause, corr, date, us, data, id, number, type, meta, pos, sid, version} | rest],
         last_us,
         last_date,
         consts
       ) do
    created_at = if us == last_us, do: last_date, else: datetime(date, consts)

    [
      %{
        __struct__: struct,
        causation_id: cause,
        correlation_id: corr,
        created_at: created_at,
        created_epoch: us,
        data: data,
        event_id: id,
        event_number: number,
        event_type: type,
        metadata: meta,
        position: pos,
        stream_id: sid,
        stream_version: version
      }
      | from_tuples(rest, us, created_at, consts)
    ]
  end

  defp from_tuples([], _, _, _), do: []

  defp datetime(
         {year, month, day, hour, minute, second, us},
         {module, calendar, zero, six, zone, abbr}
       ),
       do: %{
         __struct__: module,
         calendar: calendar,
         day: day,
         hour: hour,
         microsecond: {us, six},
         minute: minute,
         month: month,
         second: second,
         std_offset: zero,
         time_zone: zone,
         utc_offset: zero,
         year: year,
         zone_abbr: abbr
       }

  defp datetime_constants do
    key = {__MODULE__, :datetime_constants}

    case :persistent_term.get(key, nil) do
      nil ->
        consts = {DateTime, Calendar.ISO, 0, 6, "Etc/UTC", "UTC"}
        :persistent_term.put(key, consts)
        consts

      consts ->
        consts
    end
  end
end
