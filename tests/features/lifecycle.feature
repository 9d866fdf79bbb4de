Feature: The patient and room lifecycle
  The hospital's rules (DESIGN section 2), one scenario each: the scheduler books rooms,
  refers patients, and sends porters, nurses and cleaners, tick by tick. A step that says
  "a porter" or "the nurse" means whoever the scheduler sent; "porter-1" means that person.

  Scenario: 1. An arrival is booked into a free room, or referred when none is free
    Given a hospital with 1 room
    And 1 porter, 1 nurse and 1 cleaner on duty
    When patient-1 arrives
    Then patient-1 is admitted to A1
    And porter-1 escorts patient-1 to A1
    When patient-2 arrives
    Then patient-2 is referred to another hospital
    And nothing else is decided
    When patient-2 arrives again
    Then the arrival is rejected
    And nothing else is decided

  Scenario: 2. A booked patient waits for a porter when none is free, and is escorted when one is
    Given a hospital with 2 rooms
    And 1 porter, 1 nurse and 1 cleaner on duty
    When patient-1 arrives
    Then patient-1 is admitted to A1
    And porter-1 escorts patient-1 to A1
    When patient-2 arrives
    Then patient-2 is admitted to A2
    And patient-2 waits in the waiting room for a porter
    When porter-1 brings patient-1 to their room
    Then porter-1 escorts patient-2 to A2
    And nurse-1 is sent to see patient-1 in A1

  Scenario: 3. A patient in a room waits for medical staff, and is seen when someone is free
    Given a hospital with 2 rooms
    And 2 porters, 1 nurse and 1 cleaner on duty
    When patient-1 arrives
    Then a porter escorts patient-1 to A1
    When patient-2 arrives
    Then a porter escorts patient-2 to A2
    When the porter brings patient-1 to their room
    Then nurse-1 is sent to see patient-1 in A1
    When the porter brings patient-2 to their room
    Then patient-2 waits for medical staff
    When nurse-1 finishes seeing patient-1
    Then nurse-1 is sent to see patient-2 in A2
    And a porter escorts patient-1 to the exit

  Scenario: 4. A seen patient is escorted to the exit, or waits for a porter
    Given a hospital with 2 rooms
    And 1 porter, 2 nurses and 1 cleaner on duty
    When patient-1 arrives
    And porter-1 brings patient-1 to their room
    Then a nurse is sent to see patient-1 in A1
    When patient-2 arrives
    Then porter-1 escorts patient-2 to A2
    When the nurse finishes seeing patient-1
    Then patient-1 waits for a porter to the exit
    When porter-1 brings patient-2 to their room
    Then porter-1 escorts patient-1 to the exit
    When porter-1 brings patient-1 to the exit
    Then patient-1 is discharged from A1

  Scenario: 5. A room needs a cleaner when its patient reaches the exit, and waits when none is free
    Given a hospital with 2 rooms
    And 2 porters, 2 nurses and 1 cleaner on duty
    When patient-1 arrives
    And patient-2 arrives
    And the porter brings patient-1 to their room
    And the porter brings patient-2 to their room
    And the nurse finishes seeing patient-1
    And the nurse finishes seeing patient-2
    And the porter brings patient-1 to the exit
    Then patient-1 is discharged from A1
    And cleaner-1 is sent to clean A1
    When the porter brings patient-2 to the exit
    Then patient-2 is discharged from A2
    And A2 waits for a cleaner
    When cleaner-1 finishes cleaning A1
    Then A1 is available again
    And cleaner-1 is sent to clean A2

  Scenario: 6. A cleaned room is free again and takes the next patient
    Given a hospital with 1 room
    And 1 porter, 1 nurse and 1 cleaner on duty
    When patient-1 arrives
    And porter-1 brings patient-1 to their room
    And nurse-1 finishes seeing patient-1
    And porter-1 brings patient-1 to the exit
    Then patient-1 is discharged from A1
    And cleaner-1 is sent to clean A1
    When patient-2 arrives
    Then patient-2 is referred to another hospital
    When patient-3 arrives just as cleaner-1 finishes cleaning A1
    Then A1 is available again
    And patient-3 is admitted to A1
    And porter-1 escorts patient-3 to A1
