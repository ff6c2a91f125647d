// Row types of the read model, one interface per table.
export interface ProcessedEventsTable {
  event_id: string;
  stream_id: string;
  applied_at: string;
}

export interface Database {
  processed_events: ProcessedEventsTable;
}
