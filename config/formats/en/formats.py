# Footprint's date formats for English: times always with seconds (an event's order within a
# minute matters), day before month, 24-hour clock.
DATETIME_FORMAT = "j M Y, H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i:s"
